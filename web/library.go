package web

import (
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/loalang/loalang/broadcast/catalog"
	"github.com/loalang/loalang/broadcast/media"
)

// The media library: list (filtered by language or tag), listen, rename,
// tag, set the language and delete. The rules (bounds, defaults, the
// audit, the refusal to delete a clip a schedule plays) are the media
// catalog's (broadcast/catalog); these handlers decode, call it and encode.

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

// mediaPatch changes a clip's library fields; absent fields are kept.
type mediaPatch struct {
	Name     *string   `json:"name"`
	Tags     *[]string `json:"tags"`
	Language *string   `json:"language"`
}

func (s *Server) handleMediaPatch(w http.ResponseWriter, r *http.Request) {
	var p mediaPatch
	if err := s.decode(w, r, &p); err != nil {
		writeError(w, r, err)
		return
	}
	info, err := s.bc.Catalog.Update(r.Context(), UserFrom(r.Context()).Username, r.PathValue("id"),
		catalog.Patch{Name: p.Name, Tags: p.Tags, Language: p.Language})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// handleMediaDelete deletes a clip, unless a schedule plays it: 409
// naming the schedules.
func (s *Server) handleMediaDelete(w http.ResponseWriter, r *http.Request) {
	err := s.bc.Catalog.Delete(r.Context(), UserFrom(r.Context()).Username, r.PathValue("id"))
	var inUse *catalog.InUseError
	if errors.As(err, &inUse) {
		writeJSON(w, http.StatusConflict, map[string]any{"error": inUse.Error(), "schedules": inUse.Schedules})
		return
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleMediaAudio serves a stored clip as Ogg Opus (RFC 7845) for the
// phone's audio element; ServeContent answers Range requests, which
// browsers use to seek.
func (s *Server) handleMediaAudio(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p, err := s.bc.Catalog.File(r.Context(), id)
	if errors.Is(err, catalog.ErrNoFile) {
		err = fmt.Errorf("clip %s: %w", id, errNotFound)
	}
	if err != nil {
		writeError(w, r, err)
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

// mediaLanguage is a clip's language, DefaultLanguage for older records.
func mediaLanguage(info media.Info) string { return catalog.View(info).Language }
