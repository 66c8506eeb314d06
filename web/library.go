package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"net/http"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/store"
)

// The media library: list (filtered by language or tag), listen, rename,
// tag, set the language and delete. A clip a schedule plays cannot be
// deleted: the refusal (409) names the schedule.

// MediaFiles is the part of the media library that reads and removes the
// stored Ogg Opus files; *media.Library implements it.
type MediaFiles interface {
	Path(id string) (string, error)
	Remove(id string) error
}

// Library bounds.
const (
	maxMediaName = 120
	maxTags      = 10
	maxTag       = 40
)

// mediaFiles returns the library's file side, if the importer has one.
func (s *Server) mediaFiles() (MediaFiles, bool) {
	f, ok := s.bc.Media.(MediaFiles)
	return f, ok
}

// mediaLanguage is a clip's language, DefaultLanguage for older records.
func mediaLanguage(info media.Info) string {
	if info.Language == "" {
		return media.DefaultLanguage
	}
	return info.Language
}

// mediaView fills the defaults a record made before the library existed
// lacks: the name is the upload's file name, the language Vietnamese.
func mediaView(info media.Info) media.Info {
	if info.Name == "" {
		info.Name = info.SourceName
	}
	info.Language = mediaLanguage(info)
	if info.Tags == nil {
		info.Tags = []string{}
	}
	return info
}

func (s *Server) handleLanguages(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, media.Languages)
}

// languageParam reads an optional ?language= filter, refusing unknown tags.
func languageParam(r *http.Request) (string, error) {
	l := r.URL.Query().Get("language")
	if err := media.CheckLanguage(l); err != nil {
		return "", badRequest("%v", err)
	}
	return l, nil
}

// cleanTags trims, de-duplicates and bounds tags.
func cleanTags(in []string) ([]string, error) {
	out := []string{}
	for _, t := range in {
		t = strings.TrimSpace(t)
		if t == "" || slices.Contains(out, t) {
			continue
		}
		if utf8.RuneCountInString(t) > maxTag || strings.ContainsAny(t, "\r\n\t") {
			return nil, badRequest("tags: %q is longer than %d characters or has control characters", t, maxTag)
		}
		out = append(out, t)
	}
	if len(out) > maxTags {
		return nil, badRequest("tags: %d tags, at most %d", len(out), maxTags)
	}
	return out, nil
}

func cleanName(n string) (string, error) {
	n = strings.TrimSpace(n)
	if n == "" || utf8.RuneCountInString(n) > maxMediaName || strings.ContainsAny(n, "\r\n\t") {
		return "", badRequest("name: want 1–%d characters on one line", maxMediaName)
	}
	return n, nil
}

// mediaPatch changes a clip's library fields; absent fields are kept.
type mediaPatch struct {
	Name     *string   `json:"name"`
	Tags     *[]string `json:"tags"`
	Language *string   `json:"language"`
}

func (s *Server) handleMediaPatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var p mediaPatch
	if err := s.decode(w, r, &p); err != nil {
		writeError(w, r, err)
		return
	}
	var err error
	if p.Name != nil {
		if *p.Name, err = cleanName(*p.Name); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if p.Tags != nil {
		if *p.Tags, err = cleanTags(*p.Tags); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if p.Language != nil {
		if err := media.CheckLanguage(*p.Language); err != nil || *p.Language == "" {
			writeError(w, r, badRequest("language: %q is not one of %v", *p.Language, media.LanguageCodes()))
			return
		}
	}
	var info media.Info
	err = s.db.Update(func(tx *store.Tx) error {
		if err := tx.Get(store.Media, id, &info); err != nil {
			return err
		}
		detail := map[string]any{}
		if p.Name != nil {
			detail["name"] = *p.Name
			info.Name = *p.Name
		}
		if p.Tags != nil {
			detail["tags"] = *p.Tags
			info.Tags = *p.Tags
		}
		if p.Language != nil {
			detail["language"] = *p.Language
			info.Language = *p.Language
		}
		if err := tx.Put(store.Media, id, info); err != nil {
			return err
		}
		return tx.AppendAudit(store.Event{Time: s.now(), Actor: UserFrom(r.Context()).Username, Action: audit.MediaUpdate, Target: id, Detail: detail})
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mediaView(info))
}

// errMediaInUse is a delete refused because schedules play the clip.
var errMediaInUse = fmt.Errorf("media in use: %w", errConflict)

// handleMediaDelete deletes a clip's record (with its audit entry) and then
// its file, unless a schedule plays it: 409 naming the schedules.
func (s *Server) handleMediaDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var users []string
	err := s.db.Update(func(tx *store.Tx) error {
		var info media.Info
		if err := tx.Get(store.Media, id, &info); err != nil {
			return err
		}
		err := tx.Each(store.Schedules, "", func(key string, raw []byte) error {
			var sc schedule.Schedule
			if err := json.Unmarshal(raw, &sc); err != nil {
				return fmt.Errorf("read schedule %s: %w", key, err)
			}
			if sc.Source.Kind == schedule.SourceMedia && sc.Source.MediaID == id {
				users = append(users, fmt.Sprintf("“%s” (%s)", sc.Name, sc.ID))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return errMediaInUse
		}
		if err := tx.Delete(store.Media, id); err != nil {
			return err
		}
		return tx.AppendAudit(store.Event{Time: s.now(), Actor: UserFrom(r.Context()).Username, Action: audit.MediaDelete, Target: id,
			Detail: map[string]any{"name": mediaView(info).Name}})
	})
	if errors.Is(err, errMediaInUse) {
		writeJSON(w, http.StatusConflict, map[string]any{
			"error":     "the recording is used by schedule " + strings.Join(users, ", ") + "; change or delete the schedule first",
			"schedules": users,
		})
		return
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	if files, ok := s.mediaFiles(); ok {
		if err := files.Remove(id); err != nil && !errors.Is(err, media.ErrNotFound) {
			// The record is gone; a stray file costs disk, not correctness.
			LogFrom(r).Warn("media file not removed", "id", id, "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleMediaAudio serves a stored clip as Ogg Opus (RFC 7845) for the
// phone's audio element; ServeContent answers Range requests, which
// browsers use to seek.
func (s *Server) handleMediaAudio(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	info, err := store.Get[media.Info](s.db, store.Media, id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	files, ok := s.mediaFiles()
	if !ok {
		writeError(w, r, errNotFound)
		return
	}
	p, err := files.Path(info.ID)
	if err != nil {
		writeError(w, r, fmt.Errorf("clip %s: %w", id, errNotFound))
		return
	}
	f, err := os.Open(p)
	if err != nil {
		writeError(w, r, fmt.Errorf("open clip %s: %w", id, err))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeError(w, r, fmt.Errorf("stat clip %s: %w", id, err))
		return
	}
	w.Header().Set("Content-Type", "audio/ogg; codecs=opus")
	w.Header().Set("Cache-Control", "private, max-age=3600")
	http.ServeContent(w, r, "", st.ModTime(), f)
}
