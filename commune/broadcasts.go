package commune

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/uplink"
)

// Draft statuses. A draft goes submitted (from a village head) or
// pending (from the commune's editor) → approved and sent, or rejected.
// Only a sent draft is ever signed; a rejected one never is.
const (
	StatusSubmitted = "submitted" // a village head's, waiting for an editor
	StatusPending   = "pending"   // waiting for an approver
	StatusRejected  = "rejected"
	StatusSent      = "sent" // signed and being delivered
	StatusExpired   = "expired"
	// StatusScheduled is an approved draft with a future air time: the
	// commune signs and sends it at AirAt (the commune holds it, not the
	// villages; docs/commune.md).
	StatusScheduled = "scheduled"
	// StatusCancelled is a scheduled draft an approver withdrew before it
	// aired; it is never signed.
	StatusCancelled = "cancelled"
	// StatusLive is a live speech on air: its command is signed and
	// resent like a sent draft's while its audio flows (live.go).
	StatusLive = "live"
	// StatusEnded is a live speech that ended (Reason says why).
	StatusEnded = "ended"
)

// KindLive marks the record of a live speech (Draft.Kind); a bulletin's
// kind is empty.
const KindLive = "live"

// Draft is a bulletin at the commune: its content and targets, where it
// is in the approval (Circular 39/2020: biên tập, duyệt), and once
// approved the signed envelope that is resent until every village
// answered.
type Draft struct {
	ID string `json:"id"`
	// Kind is KindLive for a live speech, empty for a bulletin.
	Kind     string   `json:"kind,omitempty"`
	Title    string   `json:"title"`
	Text     string   `json:"text,omitempty"`
	Media    *Media   `json:"media,omitempty"`
	Villages []string `json:"villages"`
	Zones    []string `json:"zones,omitempty"`
	Urgency  string   `json:"urgency"`
	// Expires is when the bulletin may no longer play.
	Expires time.Time `json:"expires"`
	// AirAt, if set, is when the approved bulletin is signed and sent.
	AirAt time.Time `json:"air_at,omitzero"`
	// AirLocal is AirAt in the commune's time zone (schedule.time_zone,
	// Asia/Ho_Chi_Minh by default), for display.
	AirLocal string `json:"air_local,omitempty"`
	Status   string `json:"status"`
	// Source is "commune" or "village:<site>".
	Source    string    `json:"source"`
	CreatedBy string    `json:"created_by"`
	Created   time.Time `json:"created"`
	DecidedBy string    `json:"decided_by,omitempty"`
	Decided   time.Time `json:"decided,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	// Ended is when a live speech ended.
	Ended time.Time `json:"ended,omitzero"`
	// Bypass is true for an emergency sent without approval.
	Bypass bool `json:"bypass,omitempty"`
	// Envelope is the signed command, resent unchanged.
	Envelope []byte `json:"envelope,omitempty"`
}

// Media is a recording stored at the commune, served to villages by hash.
type Media struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Name   string `json:"name,omitempty"`
}

// Delivery is one village's answers about one sent draft.
type Delivery struct {
	Draft       string          `json:"draft"`
	Site        string          `json:"site"`
	Sends       int             `json:"sends"`
	LastSent    time.Time       `json:"last_sent,omitzero"`
	Accepted    time.Time       `json:"accepted,omitzero"`
	Refused     string          `json:"refused,omitempty"` // reason, the first one
	Failed      string          `json:"failed,omitempty"`
	Started     time.Time       `json:"started,omitzero"`
	Played      time.Time       `json:"played,omitzero"`
	BroadcastID string          `json:"broadcast_id,omitempty"`
	State       string          `json:"state,omitempty"`
	Detail      string          `json:"detail,omitempty"`
	Devices     json.RawMessage `json:"devices,omitempty"`
}

// answered reports whether the village has said it got the command.
func (d Delivery) answered() bool { return !d.Accepted.IsZero() || d.Refused != "" }

func (s *Server) extraRoutes() {
	s.Handle("GET /api/v1/commune/villages", Roles, http.HandlerFunc(s.listVillages))
	staff := []string{RoleEditor, RoleApprover}
	s.Handle("GET /api/v1/commune/drafts", staff, http.HandlerFunc(s.listDrafts))
	s.Handle("GET /api/v1/commune/drafts/{id}", staff, http.HandlerFunc(s.getDraft))
	s.Handle("POST /api/v1/commune/drafts", []string{RoleEditor}, http.HandlerFunc(s.createDraft))
	s.Handle("POST /api/v1/commune/drafts/{id}/submit", []string{RoleEditor}, http.HandlerFunc(s.submitDraft))
	s.Handle("POST /api/v1/commune/drafts/{id}/approve", []string{RoleApprover}, http.HandlerFunc(s.decide(true)))
	s.Handle("POST /api/v1/commune/drafts/{id}/reject", []string{RoleApprover}, http.HandlerFunc(s.decide(false)))
	s.Handle("POST /api/v1/commune/drafts/{id}/cancel", []string{RoleApprover}, http.HandlerFunc(s.cancelDraft))
	s.Handle("POST /api/v1/commune/media", []string{RoleEditor}, http.HandlerFunc(s.uploadMedia))
	s.Handle("GET /api/v1/commune/reports", Roles, http.HandlerFunc(s.report))
	s.Handle("GET /api/v1/commune/reports.csv", Roles, http.HandlerFunc(s.reportCSV))
	s.Handle("GET /api/v1/commune/reports.svg", Roles, http.HandlerFunc(s.reportSVG))
	s.Handle("GET /api/v1/commune/audit", []string{RoleAdmin}, http.HandlerFunc(s.listAudit))
	s.HandlePublic("GET /media/{sha}", http.HandlerFunc(s.serveMedia))
	s.appRoutes()
}

// DraftInput is the body of POST /api/v1/commune/drafts.
type DraftInput struct {
	Title    string   `json:"title"`
	Text     string   `json:"text"`
	MediaSHA string   `json:"media_sha256"`
	Villages []string `json:"villages"`
	Zones    []string `json:"zones"`
	Urgency  string   `json:"urgency"`
	// ExpiresIn is the bulletin's validity from now, e.g. "2h"; at most 24h.
	ExpiresIn string `json:"expires_in"`
	// Bypass, for an emergency only, sends it at once without approval.
	Bypass bool `json:"bypass"`
	// AirAt (RFC 3339, or "2006-01-02T15:04" in the commune's time
	// zone), if set, is when the approved bulletin airs; it must be in
	// the future and before the expiry.
	AirAt string `json:"air_at"`
	// From takes over a village head's submitted draft (its id).
	From string `json:"from"`
}

func (s *Server) createDraft(w http.ResponseWriter, r *http.Request) {
	u, _ := UserFrom(r.Context())
	var in DraftInput
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
		httpError(w, http.StatusBadRequest, "body must be a JSON draft")
		return
	}
	now := s.now().UTC()
	d := Draft{ID: "c-" + auth.RandomSecret(9), Title: strings.TrimSpace(in.Title), Text: strings.TrimSpace(in.Text), Villages: in.Villages,
		Zones: in.Zones, Urgency: in.Urgency, Status: StatusPending, Source: "commune", CreatedBy: u.Username, Created: now}
	if d.Urgency == "" {
		d.Urgency = uplink.UrgencyRoutine
	}
	ttl, err := time.ParseDuration(in.ExpiresIn)
	if in.ExpiresIn == "" {
		ttl, err = 2*time.Hour, nil
	}
	if err != nil || ttl < time.Minute || ttl > uplink.MaxLifetime {
		httpError(w, http.StatusBadRequest, "expires_in must be a duration from 1m to 24h")
		return
	}
	d.Expires = now.Add(ttl)
	if in.AirAt != "" {
		loc := s.zone()
		at, err := time.Parse(time.RFC3339, in.AirAt)
		if err != nil {
			at, err = time.ParseInLocation("2006-01-02T15:04", in.AirAt, loc)
		}
		switch {
		case err != nil:
			httpError(w, http.StatusBadRequest, "air_at must be an RFC 3339 time, e.g. 2026-12-03T07:00:00+07:00")
			return
		case !at.After(now):
			httpError(w, http.StatusBadRequest, "air_at must be in the future")
			return
		case !at.Before(d.Expires):
			httpError(w, http.StatusBadRequest, "air_at must be before the draft expires (expires_in from now)")
			return
		case in.Bypass:
			httpError(w, http.StatusBadRequest, "an emergency that bypasses approval airs at once: no air_at")
			return
		}
		d.AirAt = at.UTC()
		d.AirLocal = at.In(loc).Format("15:04 02/01/2006 MST")
	}
	if msg := s.checkDraft(d, in.MediaSHA); msg != "" {
		httpError(w, http.StatusBadRequest, msg)
		return
	}
	if in.Bypass && d.Urgency != uplink.UrgencyEmergency {
		httpError(w, http.StatusBadRequest, "only an emergency may bypass approval")
		return
	}
	err = s.db.bolt.Update(func(tx *bolt.Tx) error {
		if in.MediaSHA != "" {
			size := tx.Bucket(bMedia).Get([]byte(in.MediaSHA))
			if size == nil {
				return errNoMedia
			}
			d.Media = &Media{SHA256: in.MediaSHA, Size: int64(len(size))}
		}
		if in.From != "" {
			var from Draft
			if err := get(tx, bDrafts, in.From, &from); err != nil || from.Status != StatusSubmitted {
				return errNoDraft
			}
			from.Status, from.DecidedBy, from.Decided, from.Reason = StatusPending, u.Username, now, "taken over as "+d.ID
			if err := put(tx, bDrafts, from.ID, from); err != nil {
				return err
			}
		}
		if err := audit(tx, AuditEntry{Time: now, Actor: u.Username, Action: "draft.create", Target: d.ID,
			Detail: map[string]any{"urgency": d.Urgency, "villages": d.Villages, "from": in.From}}); err != nil {
			return err
		}
		if in.Bypass {
			d.Bypass = true
			if err := s.signTx(tx, &d, u.Username, "draft.bypass_approval"); err != nil {
				return err
			}
		}
		return put(tx, bDrafts, d.ID, d)
	})
	switch {
	case errors.Is(err, errNoMedia):
		httpError(w, http.StatusBadRequest, "media_sha256: no such recording (upload it first)")
		return
	case errors.Is(err, errNoDraft):
		httpError(w, http.StatusBadRequest, "from: no submitted draft with that id")
		return
	case err != nil:
		httpError(w, http.StatusInternalServerError, "could not store the draft: "+err.Error())
		return
	}
	if d.Status == StatusSent {
		s.kickResend()
	}
	writeJSON(w, http.StatusCreated, d.view())
}

var (
	errNoMedia = errors.New("no media")
	errNoDraft = errors.New("no draft")
)

// checkDraft validates a draft's content and targets; "" means good.
func (s *Server) checkDraft(d Draft, mediaSHA string) string {
	if (d.Text == "") == (mediaSHA == "") {
		return "give exactly one of text and media_sha256"
	}
	if len(d.Text) > 4000 {
		return "text at most 4000 bytes"
	}
	return checkTargets(d)
}

// checkTargets validates what every commune broadcast (a bulletin or a
// live speech) names besides its content: title, urgency, 1–500 village
// ids and zone ids; "" means good.
func checkTargets(d Draft) string {
	if len(d.Title) > 200 {
		return "title at most 200 bytes"
	}
	if d.Urgency != uplink.UrgencyRoutine && d.Urgency != uplink.UrgencyEmergency {
		return fmt.Sprintf("urgency %q: use routine or emergency", d.Urgency)
	}
	if len(d.Villages) == 0 || len(d.Villages) > 500 {
		return "villages: choose 1–500 villages"
	}
	for _, v := range d.Villages {
		if wire.ValidLevel(v) != nil {
			return fmt.Sprintf("villages: %q is not a village id", v)
		}
	}
	for _, z := range d.Zones {
		if wire.ValidLevel(z) != nil {
			return fmt.Sprintf("zones: %q is not a zone id", z)
		}
	}
	return ""
}

// signTx signs d as a command of this commune, stores it as sent with a
// delivery record per village, and audits action. The command id is the
// draft id; the nonce makes every copy the same command, so resends are
// harmless (a village refuses a second copy as a replay).
func (s *Server) signTx(tx *bolt.Tx, d *Draft, actor, action string) error {
	now := s.now().UTC()
	if !now.Before(d.Expires) {
		return errExpired
	}
	c := uplink.Command{V: 1, ID: d.ID, Nonce: uplink.NewNonce(), Level: uplink.LevelCommune, Sender: s.cfg.Commune.ID,
		Issued: now, Expires: d.Expires, Urgency: d.Urgency, Text: d.Text,
		Target: uplink.Target{Province: s.cfg.Commune.Province, Commune: s.cfg.Commune.ID, Villages: d.Villages, Zones: d.Zones}}
	if d.Expires.Sub(now) > uplink.MaxLifetime {
		c.Expires = now.Add(uplink.MaxLifetime)
	}
	if d.Media != nil {
		c.Media = &uplink.MediaRef{URL: s.cfg.Commune.PublicURL + "/media/" + d.Media.SHA256, SHA256: d.Media.SHA256, Size: d.Media.Size}
	}
	if d.Kind == KindLive {
		c.Live = &uplink.LiveRef{Session: d.ID}
	}
	env, err := uplink.Sign(c, s.key)
	if err != nil {
		return fmt.Errorf("sign %s: %w", d.ID, err)
	}
	d.Envelope, d.Status, d.DecidedBy, d.Decided = env, StatusSent, actor, now
	for _, site := range d.Villages {
		if err := put(tx, bDeliveries, d.ID+"/"+site, Delivery{Draft: d.ID, Site: site}); err != nil {
			return err
		}
	}
	return audit(tx, AuditEntry{Time: now, Actor: actor, Action: action, Target: d.ID,
		Detail: map[string]any{"urgency": d.Urgency, "villages": d.Villages, "zones": d.Zones, "expires": d.Expires}})
}

var errExpired = errors.New("the draft has expired")

func (s *Server) submitDraft(w http.ResponseWriter, r *http.Request) {
	// A village head's draft is taken over with POST /drafts {"from": id}
	// (the editor chooses villages and may edit); nothing else to submit.
	httpError(w, http.StatusBadRequest, "create a draft with {\"from\": \"<submitted id>\"} to take over a village's submission")
}

// decide approves (signs and sends) or rejects a pending draft.
func (s *Server) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFrom(r.Context())
		var in struct{ Reason string }
		json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in)
		var d Draft
		err := s.db.bolt.Update(func(tx *bolt.Tx) error {
			if err := get(tx, bDrafts, r.PathValue("id"), &d); err != nil {
				return errNoDraft
			}
			if d.Status != StatusPending {
				return fmt.Errorf("%w: it is %s", errState, d.Status)
			}
			if approve && !d.AirAt.IsZero() {
				// Scheduled: signed and sent by the resender at AirAt.
				now := s.now().UTC()
				if !d.AirAt.After(now) {
					return errAirPassed
				}
				d.Status, d.DecidedBy, d.Decided = StatusScheduled, u.Username, now
				if err := audit(tx, AuditEntry{Time: now, Actor: u.Username, Action: "draft.approve", Target: d.ID,
					Detail: map[string]any{"air_at": d.AirAt, "villages": d.Villages}}); err != nil {
					return err
				}
			} else if approve {
				if err := s.signTx(tx, &d, u.Username, "draft.approve"); err != nil {
					return err
				}
			} else {
				now := s.now().UTC()
				d.Status, d.DecidedBy, d.Decided, d.Reason = StatusRejected, u.Username, now, in.Reason
				if err := audit(tx, AuditEntry{Time: now, Actor: u.Username, Action: "draft.reject", Target: d.ID, Detail: map[string]any{"reason": in.Reason}}); err != nil {
					return err
				}
			}
			return put(tx, bDrafts, d.ID, d)
		})
		switch {
		case errors.Is(err, errNoDraft):
			httpError(w, http.StatusNotFound, "no such draft")
		case errors.Is(err, errAirPassed):
			httpError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, errState), errors.Is(err, errExpired):
			httpError(w, http.StatusConflict, err.Error())
		case err != nil:
			httpError(w, http.StatusInternalServerError, err.Error())
		default:
			if approve {
				s.kickResend()
			}
			writeJSON(w, http.StatusOK, d.view())
		}
	}
}

// zone is the commune's time zone for air times: schedule.time_zone
// (validated at config load), else Vietnam's UTC+7.
func (s *Server) zone() *time.Location {
	if loc, err := time.LoadLocation(s.cfg.Schedule.TimeZone); err == nil && s.cfg.Schedule.TimeZone != "" {
		return loc
	}
	return time.FixedZone("ICT", 7*3600)
}

var (
	errState     = errors.New("the draft is not pending")
	errAirPassed = errors.New("air_at has passed: create the draft again with a later air_at")
)

// cancelDraft withdraws a scheduled draft before it airs; it is never
// signed or sent.
func (s *Server) cancelDraft(w http.ResponseWriter, r *http.Request) {
	u, _ := UserFrom(r.Context())
	var in struct{ Reason string }
	json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in)
	var d Draft
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bDrafts, r.PathValue("id"), &d); err != nil {
			return errNoDraft
		}
		if d.Status != StatusScheduled {
			return fmt.Errorf("only a scheduled draft can be cancelled: it is %s", d.Status)
		}
		now := s.now().UTC()
		d.Status, d.Reason = StatusCancelled, in.Reason
		if err := audit(tx, AuditEntry{Time: now, Actor: u.Username, Action: "draft.cancel", Target: d.ID,
			Detail: map[string]any{"reason": in.Reason, "air_at": d.AirAt}}); err != nil {
			return err
		}
		return put(tx, bDrafts, d.ID, d)
	})
	switch {
	case errors.Is(err, errNoDraft):
		httpError(w, http.StatusNotFound, "no such draft")
	case err != nil:
		httpError(w, http.StatusConflict, err.Error())
	default:
		writeJSON(w, http.StatusOK, d.view())
	}
}

// view is a draft without its envelope bytes.
func (d Draft) view() Draft {
	d.Envelope = nil
	return d
}

// DraftView is a draft with its per-village delivery.
type DraftView struct {
	Draft
	Deliveries []Delivery `json:"deliveries"`
	// Summary counts the villages by their furthest step and sums the
	// speakers' delivery.
	Summary DraftSummary `json:"summary"`
}

// DraftSummary aggregates a sent draft's deliveries.
type DraftSummary struct {
	Villages       int    `json:"villages"`
	Accepted       int    `json:"accepted"`
	Refused        int    `json:"refused"`
	Started        int    `json:"started"`
	Played         int    `json:"played"`
	Speakers       int    `json:"speakers"`
	SpeakersPlayed int    `json:"speakers_played"`
	FramesExpected uint64 `json:"frames_expected"`
	FramesPlayed   uint64 `json:"frames_played"`
}

func (s *Server) draftView(tx *bolt.Tx, d Draft) (DraftView, error) {
	dels, err := list[Delivery](tx, bDeliveries, d.ID+"/")
	if err != nil {
		return DraftView{}, err
	}
	v := DraftView{Draft: d.view(), Deliveries: dels}
	if v.Deliveries == nil {
		v.Deliveries = []Delivery{}
	}
	v.Summary.Villages = len(dels)
	for _, x := range dels {
		if !x.Accepted.IsZero() {
			v.Summary.Accepted++
		}
		if x.Refused != "" {
			v.Summary.Refused++
		}
		if !x.Started.IsZero() {
			v.Summary.Started++
		}
		if !x.Played.IsZero() {
			v.Summary.Played++
		}
		var devs []struct {
			FramesExpected uint64 `json:"frames_expected"`
			FramesPlayed   uint64 `json:"frames_played"`
		}
		json.Unmarshal(x.Devices, &devs)
		for _, dv := range devs {
			v.Summary.Speakers++
			if dv.FramesPlayed > 0 {
				v.Summary.SpeakersPlayed++
			}
			v.Summary.FramesExpected += dv.FramesExpected
			v.Summary.FramesPlayed += dv.FramesPlayed
		}
	}
	return v, nil
}

func (s *Server) listDrafts(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	out := []DraftView{}
	err := s.db.bolt.View(func(tx *bolt.Tx) error {
		ds, err := list[Draft](tx, bDrafts, "")
		if err != nil {
			return err
		}
		for _, d := range ds {
			if status != "" && d.Status != status {
				continue
			}
			v, err := s.draftView(tx, d)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	slices.SortFunc(out, func(a, b DraftView) int { return b.Created.Compare(a.Created) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDraft(w http.ResponseWriter, r *http.Request) {
	var v DraftView
	err := s.db.bolt.View(func(tx *bolt.Tx) error {
		var d Draft
		if err := get(tx, bDrafts, r.PathValue("id"), &d); err != nil {
			return err
		}
		var err error
		v, err = s.draftView(tx, d)
		return err
	})
	if errors.Is(err, errNotFound) {
		httpError(w, http.StatusNotFound, "no such draft")
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// uploadMedia stores a recording (the raw body; any format the villages'
// importer decodes) and answers its sha256 and size.
func (s *Server) uploadMedia(w http.ResponseWriter, r *http.Request) {
	max := s.cfg.Commune.MaxUploadBytes
	if max <= 0 {
		max = 20 << 20
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil || len(body) == 0 {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("the body must be a recording of 1 to %d bytes", max))
		return
	}
	sum := sha256.Sum256(body)
	sha := hex.EncodeToString(sum[:])
	u, _ := UserFrom(r.Context())
	err = s.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bMedia).Put([]byte(sha), body); err != nil {
			return err
		}
		return audit(tx, AuditEntry{Time: s.now().UTC(), Actor: u.Username, Action: "media.upload", Target: sha, Detail: map[string]any{"size": len(body)}})
	})
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, Media{SHA256: sha, Size: int64(len(body))})
}

// serveMedia serves a recording by its sha256 to the villages, without
// sign-in: the hash is in the signed command, and the village checks it.
func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	var body []byte
	s.db.bolt.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bMedia).Get([]byte(sha)); b != nil {
			body = slices.Clone(b)
		}
		return nil
	})
	if body == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
	w.Write(body)
}

// applyReport records a village's report on one of this commune's
// commands. A refusal as a replay after an acceptance is the resend's
// echo and changes nothing.
func (s *Server) applyReport(tx *bolt.Tx, site string, ev uplink.Event) error {
	var rep struct {
		uplink.Report
		Devices json.RawMessage `json:"devices"`
	}
	if json.Unmarshal(ev.Data, &rep) != nil || rep.Level != uplink.LevelCommune || rep.Sender != s.cfg.Commune.ID {
		return nil
	}
	var d Delivery
	if err := get(tx, bDeliveries, rep.CommandID+"/"+site, &d); err != nil {
		return nil // not ours, or for a village not targeted
	}
	at := ev.Time.UTC()
	switch rep.Outcome {
	case uplink.OutcomeAccepted:
		d.Accepted = at
	case uplink.OutcomeRefused:
		if d.Refused == "" && !(rep.Reason == "replay" && !d.Accepted.IsZero()) {
			d.Refused, d.Detail = rep.Reason, rep.Detail
		}
	case uplink.OutcomeFailed:
		d.Failed, d.Detail = rep.Reason, rep.Detail
	case uplink.OutcomeStarted:
		d.Started, d.BroadcastID = at, rep.BroadcastID
	case uplink.OutcomePlayed:
		d.Played, d.State, d.Devices = at, rep.State, rep.Devices
		if rep.Detail != "" {
			d.Detail = rep.Detail
		}
	}
	return put(tx, bDeliveries, rep.CommandID+"/"+site, d)
}

// applyDraft lists a village head's bulletin as a submitted draft.
func (s *Server) applyDraft(tx *bolt.Tx, site string, ev uplink.Event) error {
	var in uplink.DraftData
	if json.Unmarshal(ev.Data, &in) != nil || in.ID == "" || len(in.Text) > 4000 {
		return nil
	}
	urg := in.Urgency
	if urg != uplink.UrgencyEmergency {
		urg = uplink.UrgencyRoutine
	}
	id := "v-" + site + "-" + in.ID
	if tx.Bucket(bDrafts).Get([]byte(id)) != nil {
		return nil
	}
	d := Draft{ID: id, Title: in.Title, Text: in.Text, Villages: []string{site}, Zones: in.Zones, Urgency: urg,
		Status: StatusSubmitted, Source: "village:" + site, CreatedBy: in.Author + "@" + site, Created: in.Created,
		Expires: in.Created.Add(uplink.MaxLifetime)}
	if err := audit(tx, AuditEntry{Time: s.now().UTC(), Actor: d.CreatedBy, Action: "draft.submitted", Target: id}); err != nil {
		return err
	}
	return put(tx, bDrafts, id, d)
}

// kickResend wakes the resender (a connection, a village back online,
// a new approval).
func (s *Server) kickResend() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// resendLoop publishes the envelope of every sent, unexpired draft and
// every live speech on air to each target village that has not answered,
// every resend_every and when kicked, until each village answered, the
// draft expired or the speech ended (docs/uplink.md: the sender resends
// until every target reported).
func (s *Server) resendLoop(ctx context.Context) {
	every := s.cfg.Commune.ResendEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		// Wake at the next scheduled air time if it comes before the next
		// resend, so a scheduled bulletin airs on time, not up to a
		// period late.
		wait := every
		if next := s.resendOnce(ctx, every); !next.IsZero() {
			wait = max(min(wait, next.Sub(s.now())), 0)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

type sendJob struct {
	draft, site string
	env         []byte
}

// resendOnce signs the scheduled drafts that are due and publishes what
// is owed; it returns the earliest air time still ahead (zero if none).
func (s *Server) resendOnce(ctx context.Context, every time.Duration) (nextAir time.Time) {
	if !s.mqtt.connected.Load() {
		return time.Time{}
	}
	now := s.now().UTC()
	var jobs []sendJob
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		ds, err := list[Draft](tx, bDrafts, "")
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.Status == StatusScheduled && now.Before(d.AirAt) && (nextAir.IsZero() || d.AirAt.Before(nextAir)) {
				nextAir = d.AirAt
			}
			if d.Status == StatusScheduled && !now.Before(d.AirAt) {
				// Air time: sign now (Issued = air time), as the approver
				// who scheduled it. Past the expiry it expires unsent.
				if err := s.signTx(tx, &d, d.DecidedBy, "draft.air"); errors.Is(err, errExpired) {
					d.Status = StatusExpired
				} else if err != nil {
					return err
				}
				if err := put(tx, bDrafts, d.ID, d); err != nil {
					return err
				}
			}
			if d.Status != StatusSent && d.Status != StatusLive {
				continue
			}
			if d.Status == StatusSent && !now.Before(d.Expires) {
				d.Status = StatusExpired
				if err := put(tx, bDrafts, d.ID, d); err != nil {
					return err
				}
				continue
			}
			dels, err := list[Delivery](tx, bDeliveries, d.ID+"/")
			if err != nil {
				return err
			}
			for _, x := range dels {
				// Not again within half a period: a kick right after a
				// send does not double it.
				if x.answered() || now.Sub(x.LastSent) < every/2 {
					continue
				}
				jobs = append(jobs, sendJob{d.ID, x.Site, d.Envelope})
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("resend: read drafts", "err", err)
		s.health.Set("commune-resend", fmt.Errorf("read drafts: %w", err))
		return nextAir
	}
	s.health.Set("commune-resend", nil)
	for _, j := range jobs {
		topics, err := uplink.NewTopics(s.cfg.Commune.Province, s.cfg.Commune.ID, j.site)
		if err != nil {
			continue
		}
		ct := topics.CommandTopics()
		if err := s.publish(ctx, ct[len(ct)-1], j.env); err != nil {
			s.log.Warn("command not published", "draft", j.draft, "site", j.site, "err", err)
			return nextAir
		}
		s.db.bolt.Update(func(tx *bolt.Tx) error {
			var d Delivery
			if err := get(tx, bDeliveries, j.draft+"/"+j.site, &d); err != nil {
				return err
			}
			d.Sends++
			d.LastSent = now
			return put(tx, bDeliveries, j.draft+"/"+j.site, d)
		})
	}
	return nextAir
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	var out []AuditEntry
	s.db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		out, err = list[AuditEntry](tx, bAudit, "")
		return err
	})
	if out == nil {
		out = []AuditEntry{}
	}
	writeJSON(w, http.StatusOK, out)
}
