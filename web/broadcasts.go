package web

import (
	"context"
	"errors"
	"github.com/loalang/loalang/audit"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"sort"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/catalog"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/playout"
)

// Broadcasts is the broadcast engine as the API uses it.
type Broadcasts interface {
	Start(ctx context.Context, req broadcast.Request) (broadcast.Broadcast, error)
	Stop(ctx context.Context, id, actor string) error
	StopAll(ctx context.Context, actor string) (int, error)
	Get(id string) (broadcast.Broadcast, error)
	List() []broadcast.Broadcast
}

// MediaEncoder turns an upload into an encoded clip (*media.Library).
type MediaEncoder interface {
	Encode(ctx context.Context, sourceName string, r io.Reader) (media.Clip, error)
}

// BroadcastDeps enables the media and broadcast routes.
type BroadcastDeps struct {
	Engine Broadcasts
	Media  MediaEncoder
	// Catalog owns the media library's index and files.
	Catalog *catalog.Catalog
	// Log is the play-out log: the records of past broadcasts.
	Log *playout.Log
	// MaxUpload bounds a media upload in bytes.
	MaxUpload int64
}

// EnableBroadcasts registers the media and broadcast routes.
func (s *Server) EnableBroadcasts(d BroadcastDeps) {
	s.bc = d
	heads := []auth.Role{auth.RoleAdmin, auth.RoleHead}
	s.Handle("POST /api/v1/media", s.handleUpload, heads...)
	s.Handle("GET /api/v1/media", s.handleMediaList, heads...)
	s.Handle("GET /api/v1/media/{id}", s.handleMediaGet, heads...)
	s.Handle("PATCH /api/v1/media/{id}", s.handleMediaPatch, heads...)
	s.Handle("DELETE /api/v1/media/{id}", s.handleMediaDelete, heads...)
	s.Handle("GET /api/v1/media/{id}/audio", s.handleMediaAudio, heads...)
	s.Handle("GET /api/v1/languages", s.handleLanguages, heads...)
	s.Handle("POST /api/v1/broadcasts", s.handleBroadcast, heads...)
	s.Handle("GET /api/v1/broadcasts", s.handleBroadcasts, heads...)
	s.Handle("POST /api/v1/broadcasts/stop-all", s.handleStopAll, heads...)
	s.Handle("GET /api/v1/broadcasts/{id}", s.handleBroadcastGet, heads...)
	s.Handle("DELETE /api/v1/broadcasts/{id}", s.handleBroadcastStop, heads...)
	s.reportRoutes()
}

// handleUpload takes multipart field "file". The body is bounded before
// anything is parsed, and the part streams into the importer, which spools
// it to a temporary file in the data dir (never into memory) and refuses
// it with 503 and Retry-After when broadcast.upload_queue imports are
// already in flight; an oversized upload is refused with 413.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "multipart/form-data" || params["boundary"] == "" {
		writeError(w, r, badRequest("body: want multipart/form-data with a field named file"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.bc.MaxUpload+64<<10)
	mr := multipart.NewReader(r.Body, params["boundary"])
	// The library fields may come as query parameters or as form fields
	// before the file.
	fields := map[string]string{"language": r.URL.Query().Get("language"), "name": r.URL.Query().Get("name"), "tags": r.URL.Query().Get("tags")}
	var part *multipart.Part
	for {
		part, err = mr.NextPart()
		if err != nil {
			writeError(w, r, uploadErr(err))
			return
		}
		if part.FormName() == "file" {
			break
		}
		if _, ok := fields[part.FormName()]; ok {
			v, _ := io.ReadAll(io.LimitReader(part, 1<<10))
			fields[part.FormName()] = string(v)
		}
	}
	up, err := catalog.NewUpload(part.FileName(), fields["name"], fields["tags"], fields["language"])
	if err != nil {
		writeError(w, r, err)
		return
	}
	clip, err := s.bc.Media.Encode(r.Context(), up.Source, part)
	if err != nil {
		writeError(w, r, uploadErr(err))
		return
	}
	info, err := s.bc.Catalog.Add(r.Context(), UserFrom(r.Context()).Username, up, clip)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

// uploadErr names the field for errors of the multipart framing itself.
func uploadErr(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return media.ErrTooLarge
	case errors.Is(err, io.EOF):
		return badRequest("file: the form has no field named file")
	}
	return err
}

// handleMediaList lists the library sorted by name, filtered
// by ?language= and ?tag=.
func (s *Server) handleMediaList(w http.ResponseWriter, r *http.Request) {
	lang, err := languageParam(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out, err := s.bc.Catalog.List(r.Context(), catalog.Filter{Language: lang, Tag: r.URL.Query().Get("tag")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleMediaGet(w http.ResponseWriter, r *http.Request) {
	info, err := s.bc.Catalog.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

type broadcastRequest struct {
	MediaID  string   `json:"media_id"`
	Text     string   `json:"text"`
	Zones    []string `json:"zones"`
	Priority string   `json:"priority"`
	Volume   int      `json:"volume"`
	// Language tags the broadcast; a clip's own language is used when
	// empty, and text is spoken in it (400 where espeak-ng has no voice).
	Language string `json:"language"`
}

func (s *Server) handleBroadcast(w http.ResponseWriter, r *http.Request) {
	var req broadcastRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if (req.MediaID == "") == (req.Text == "") {
		writeError(w, r, badRequest("media_id: give exactly one of media_id and text"))
		return
	}
	if err := media.CheckLanguage(req.Language); err != nil {
		writeError(w, r, badRequest("%v", err))
		return
	}
	if req.MediaID != "" {
		info, err := s.bc.Catalog.Get(r.Context(), req.MediaID)
		if err != nil {
			writeError(w, r, badRequest("media_id: no media %q", req.MediaID))
			return
		}
		if req.Language == "" {
			req.Language = info.Language
		}
	}
	if req.Text != "" {
		if _, err := media.VoiceFor(req.Language); err != nil {
			writeError(w, r, badRequest("%v", err))
			return
		}
	}
	if req.Language == "" {
		req.Language = media.DefaultLanguage
	}
	b, err := s.bc.Engine.Start(r.Context(), broadcast.Request{MediaID: req.MediaID, Text: req.Text, Zones: req.Zones,
		Priority: broadcast.Priority(req.Priority), Volume: req.Volume, Actor: UserFrom(r.Context()).Username, Origin: broadcast.OriginAPI, Language: req.Language})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, b)
}

func (s *Server) handleBroadcasts(w http.ResponseWriter, r *http.Request) {
	list := s.bc.Engine.List()
	sort.Slice(list, func(i, j int) bool { return list[i].Created.After(list[j].Created) })
	writeJSON(w, http.StatusOK, nonNil(list))
}

// handleBroadcastGet answers from the engine while it remembers the
// broadcast, and from the durable log after that (or after a restart).
func (s *Server) handleBroadcastGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, err := s.bc.Engine.Get(id)
	if errors.Is(err, broadcast.ErrNotFound) {
		b, err = s.bc.Log.Get(r.Context(), id)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		broadcast.Broadcast
		Wired []wiredView `json:"wired,omitempty"`
	}{b, s.wired(b.StreamIDs)})
}

func (s *Server) handleBroadcastStop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.bc.Engine.Stop(r.Context(), id, UserFrom(r.Context()).Username); err != nil {
		writeError(w, r, err)
		return
	}
	s.audit(r, audit.BroadcastStop, id, nil)
	b, err := s.bc.Engine.Get(id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// handleStopAll is the kill switch (DESIGN.md "Kill switch").
func (s *Server) handleStopAll(w http.ResponseWriter, r *http.Request) {
	n, err := s.bc.Engine.StopAll(r.Context(), UserFrom(r.Context()).Username)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.audit(r, audit.BroadcastStopAll, "", map[string]any{"stopped": n})
	writeJSON(w, http.StatusOK, map[string]int{"stopped": n})
}

// nonNil makes empty lists encode as [] rather than null.
func nonNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
