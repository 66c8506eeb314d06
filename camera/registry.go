package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/device/wire"
)

// Record is a camera added, changed or removed through the API, as kept
// in the store. URL and SubstreamURL hold no credentials (they show
// Placeholder where a secret was); the secrets are kept apart in Secret
// and SubstreamSecret, which are write-only: never returned, logged or
// audited. Records written before this split, with credentials in their
// URLs, are rewritten when the registry starts.
type Record struct {
	ID              string      `json:"id"`
	Name            string      `json:"name,omitempty"`
	URL             string      `json:"url,omitempty"`
	SubstreamURL    string      `json:"substream_url,omitempty"`
	Secret          Credentials `json:"secret,omitzero"`
	SubstreamSecret Credentials `json:"substream_secret,omitzero"`
	AlwaysOn        bool        `json:"always_on,omitempty"`
	// Deleted is a tombstone: it hides a camera of the config file too.
	Deleted bool      `json:"deleted,omitempty"`
	Updated time.Time `json:"updated"`
}

// RecordStore is the registry's persistence port (store.CameraStore
// implements it).
type RecordStore interface {
	// Records returns every stored record.
	Records(ctx context.Context) ([]Record, error)
	// PutRecords stores recs under their ID together with entries, in one
	// durable transaction.
	PutRecords(ctx context.Context, recs map[string]Record, entries ...audit.Entry) error
}

// Target is what the registry keeps up to date: the relay.
type Target interface {
	SetCameras(cams []Camera)
}

// Errors of the registry. Validation errors are *FieldError, which match
// ErrInvalid; an unknown camera matches ErrNotFound.
var (
	ErrInvalid = errors.New("invalid camera")
	ErrExists  = errors.New("already exists")
)

// FieldError is a change the registry refuses; its message names the
// field and never echoes a URL (it may hold credentials).
type FieldError struct{ Field, Reason string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Registry is the camera registry. It owns these rules:
//
//   - the camera list is the config file's cameras overridden by the
//     records changed through the API: a record replaces the camera of its
//     ID, a tombstone hides it, others follow in ID order (Merge); the
//     relay is set to that list at start and after every change, in
//     commit order;
//   - a camera's ID is a topic level (wire.ValidLevel), its name at most
//     200 bytes, its URLs rtsp:// or rtsps://, and errors never echo a URL;
//   - credentials are kept apart from URLs, write-only: sent in a URL they
//     move into the secret, a Placeholder sent back keeps the stored
//     value, and stored user information never follows a camera to another
//     host (SplitRequestURL);
//   - every change commits with its audit entry (camera.create,
//     camera.update, camera.delete), which holds only redacted URLs;
//   - records stored before credentials were split out are rewritten at
//     start, in one transaction.
type Registry struct {
	store RecordStore
	relay Target
	base  []Camera
	log   *slog.Logger
	// Now is the clock of Updated and the audit entries.
	Now func() time.Time

	// mu serialises changes so the relay is set in commit order.
	mu sync.Mutex
}

// NewRegistry returns the registry of base (the config file's cameras)
// and the stored records, moves credentials out of old records' URLs, and
// sets relay to the merged list.
func NewRegistry(ctx context.Context, st RecordStore, relay Target, base []Camera, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{store: st, relay: relay, base: base, log: log.With("component", "camera"), Now: time.Now}
	if err := r.migrateSecrets(ctx); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.apply(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Merge returns base overridden by recs: a record replaces the camera of
// the same ID, a deleted record removes it, and other records are added
// after the base cameras in ID order.
func Merge(base []Camera, recs []Record) []Camera {
	byID := map[string]Record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	out := make([]Camera, 0, len(base)+len(recs))
	seen := map[string]bool{}
	for _, c := range base {
		seen[c.ID] = true
		r, ok := byID[c.ID]
		switch {
		case !ok:
			out = append(out, c)
		case !r.Deleted:
			out = append(out, r.Camera())
		}
	}
	recs = slices.Clone(recs)
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.ID, b.ID) })
	for _, r := range recs {
		if !seen[r.ID] && !r.Deleted {
			out = append(out, r.Camera())
		}
	}
	return out
}

// Camera is the relay's camera of a record.
func (r Record) Camera() Camera {
	c := Camera{ID: r.ID, Name: r.Name, AlwaysOn: r.AlwaysOn}
	c.URL, c.Credentials = SplitKeeping(r.URL, r.Secret)
	if r.SubstreamURL != "" {
		c.SubstreamURL, c.SubstreamCredentials = SplitKeeping(r.SubstreamURL, r.SubstreamSecret)
	}
	return c
}

// SplitKeeping returns the URL without credentials and the credentials
// apart: a URL that still carries them (a config-file camera, a record
// from before the split) is split; one already split keeps stored.
func SplitKeeping(raw string, stored Credentials) (string, Credentials) {
	clean, cred, err := SplitURL(raw)
	if err != nil || cred.IsZero() {
		return raw, stored
	}
	if filled, err := cred.Fill(stored); err == nil {
		return clean, filled
	}
	return clean, cred
}

// migrateSecrets rewrites records stored before credentials were kept
// apart from the URL, in one transaction, so no credential stays in a
// stored URL after the first start of this version.
func (r *Registry) migrateSecrets(ctx context.Context) error {
	recs, err := r.store.Records(ctx)
	if err != nil {
		return fmt.Errorf("list cameras: %w", err)
	}
	changed := map[string]Record{}
	for _, rec := range recs {
		if rec.Deleted {
			continue
		}
		cam := rec.Camera()
		if cam.URL == rec.URL && cam.SubstreamURL == rec.SubstreamURL {
			continue
		}
		rec.URL, rec.Secret, rec.SubstreamURL, rec.SubstreamSecret = cam.URL, cam.Credentials, cam.SubstreamURL, cam.SubstreamCredentials
		changed[rec.ID] = rec
	}
	if len(changed) == 0 {
		return nil
	}
	if err := r.store.PutRecords(ctx, changed); err != nil {
		return fmt.Errorf("move camera credentials out of stored URLs: %w", err)
	}
	r.log.Info("camera credentials moved out of stored URLs", "cameras", len(changed))
	return nil
}

// Cameras returns the merged camera list.
func (r *Registry) Cameras(ctx context.Context) ([]Camera, error) {
	recs, err := r.store.Records(ctx)
	if err != nil {
		return nil, fmt.Errorf("list cameras: %w", err)
	}
	return Merge(r.base, recs), nil
}

// apply sets the relay to the merged list; r.mu must be held.
func (r *Registry) apply(ctx context.Context) error {
	cams, err := r.Cameras(ctx)
	if err != nil {
		return err
	}
	r.relay.SetCameras(cams)
	return nil
}

// Change is a camera as an admin sends it; on update a nil field keeps
// its value, so a camera can be renamed without re-entering credentials
// the API never shows. Username and Password, when given, set the user
// information of both streams (one device, one account); an empty string
// clears it.
type Change struct {
	Name, URL, SubstreamURL *string
	Username, Password      *string
	OnDemand                *bool
}

// checkRTSP validates a camera URL without ever echoing it: it may hold
// credentials.
func checkRTSP(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
		return fieldErr(field, "not an rtsp:// or rtsps:// URL")
	}
	return nil
}

// SplitRequestURL moves the credentials of a URL an admin sent into its
// secret. Placeholders are filled from the stored secret; the stored user
// information is kept when the new URL has none and points at the same
// host. Errors name the field and never echo the URL.
func SplitRequestURL(field, raw, oldURL string, old Credentials) (string, Credentials, error) {
	if raw == "" {
		return "", Credentials{}, nil
	}
	if err := checkRTSP(field, raw); err != nil {
		return "", Credentials{}, err
	}
	clean, sec, err := SplitURL(raw)
	if err != nil {
		return "", Credentials{}, fieldErr(field, "not an rtsp:// or rtsps:// URL")
	}
	if sec, err = sec.Fill(old); err != nil {
		return "", Credentials{}, fieldErr(field, "%v", err)
	}
	if sec.Username == "" && sec.Password == "" && sameHost(clean, oldURL) {
		sec.Username, sec.Password = old.Username, old.Password
	}
	return clean, sec, nil
}

// sameHost reports whether two URLs name the same host and port, so stored
// user information never follows a camera to another address.
func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Host != "" && strings.EqualFold(ua.Host, ub.Host)
}

// Apply applies a change to rec and validates the result.
func (ch Change) Apply(rec *Record) error {
	if ch.Name != nil {
		rec.Name = strings.TrimSpace(*ch.Name)
	}
	if ch.URL != nil {
		u, sec, err := SplitRequestURL("url", strings.TrimSpace(*ch.URL), rec.URL, rec.Secret)
		if err != nil {
			return err
		}
		rec.URL, rec.Secret = u, sec
	}
	if ch.SubstreamURL != nil {
		u, sec, err := SplitRequestURL("substream_url", strings.TrimSpace(*ch.SubstreamURL), rec.SubstreamURL, rec.SubstreamSecret)
		if err != nil {
			return err
		}
		rec.SubstreamURL, rec.SubstreamSecret = u, sec
	}
	if ch.Username != nil {
		rec.Secret.Username = *ch.Username
		rec.SubstreamSecret.Username = *ch.Username
	}
	if ch.Password != nil {
		rec.Secret.Password = *ch.Password
		rec.SubstreamSecret.Password = *ch.Password
	}
	if rec.SubstreamURL == "" {
		rec.SubstreamSecret = Credentials{}
	}
	if ch.OnDemand != nil {
		rec.AlwaysOn = !*ch.OnDemand
	}
	if rec.Name == "" {
		rec.Name = rec.ID
	}
	if len(rec.Name) > 200 {
		return fieldErr("name", "longer than 200 bytes")
	}
	if err := checkRTSP("url", rec.URL); err != nil {
		return err
	}
	if rec.SubstreamURL != "" {
		if err := checkRTSP("substream_url", rec.SubstreamURL); err != nil {
			return err
		}
	}
	return nil
}

// Create adds a camera; an ID in use (by the config file too) matches
// ErrExists.
func (r *Registry) Create(ctx context.Context, actor, id string, ch Change) (Record, error) {
	if err := wire.ValidLevel(id); err != nil {
		return Record{}, fieldErr("id", "%v", err)
	}
	if ch.URL == nil {
		return Record{}, fieldErr("url", "required")
	}
	rec := Record{ID: id}
	if err := ch.Apply(&rec); err != nil {
		return Record{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cams, err := r.Cameras(ctx)
	if err != nil {
		return Record{}, err
	}
	if slices.ContainsFunc(cams, func(c Camera) bool { return c.ID == id }) {
		return Record{}, fmt.Errorf("camera %s: %w", id, ErrExists)
	}
	return rec, r.commit(ctx, actor, rec, audit.CameraCreate)
}

// Update changes a camera; an unknown one matches ErrNotFound.
func (r *Registry) Update(ctx context.Context, actor, id string, ch Change) (Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cams, err := r.Cameras(ctx)
	if err != nil {
		return Record{}, err
	}
	i := slices.IndexFunc(cams, func(c Camera) bool { return c.ID == id })
	if i < 0 {
		return Record{}, fmt.Errorf("camera %s: %w", id, ErrNotFound)
	}
	cur := cams[i]
	rec := Record{ID: id, Name: cur.Name, URL: cur.URL, SubstreamURL: cur.SubstreamURL,
		Secret: cur.Credentials, SubstreamSecret: cur.SubstreamCredentials, AlwaysOn: cur.AlwaysOn}
	if err := ch.Apply(&rec); err != nil {
		return Record{}, err
	}
	return rec, r.commit(ctx, actor, rec, audit.CameraUpdate)
}

// Delete removes a camera, with a tombstone that also hides a config-file
// camera across restarts; an unknown one matches ErrNotFound.
func (r *Registry) Delete(ctx context.Context, actor, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cams, err := r.Cameras(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(cams, func(c Camera) bool { return c.ID == id }) {
		return fmt.Errorf("camera %s: %w", id, ErrNotFound)
	}
	return r.commit(ctx, actor, Record{ID: id, Deleted: true}, audit.CameraDelete)
}

// commit stores rec with its audit entry in one transaction and applies
// the new list to the relay; r.mu must be held.
func (r *Registry) commit(ctx context.Context, actor string, rec Record, action audit.Action) error {
	rec.Updated = r.Now()
	detail := map[string]any{}
	if !rec.Deleted {
		// Only the stored, credential-free URLs: the secret is never audited.
		detail = map[string]any{"name": rec.Name, "url": rec.Secret.Redacted(RedactURL(rec.URL)), "on_demand": !rec.AlwaysOn,
			"has_secret": !rec.Secret.IsZero() || !rec.SubstreamSecret.IsZero()}
		if rec.SubstreamURL != "" {
			detail["substream_url"] = rec.SubstreamSecret.Redacted(RedactURL(rec.SubstreamURL))
		}
	}
	ev := audit.Entry{Time: rec.Updated, Actor: actor, Action: action, Target: rec.ID, Detail: detail}
	if err := r.store.PutRecords(ctx, map[string]Record{rec.ID: rec}, ev); err != nil {
		return fmt.Errorf("save camera %s: %w", rec.ID, err)
	}
	return r.apply(ctx)
}
