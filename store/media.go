package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast/catalog"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
)

// MediaStore keeps the media catalog's index in bucket Media, one
// media.Info per clip ID; it implements catalog.Store.
type MediaStore struct{ db *DB }

// NewMediaStore returns the catalog's store over db.
func NewMediaStore(db *DB) *MediaStore { return &MediaStore{db: db} }

var _ catalog.Store = (*MediaStore)(nil)

// notFound keeps the store's message and matches both ErrNotFound and
// the service's own sentinel, so that the service's callers need not know
// the store.
type notFound struct{ err, sentinel error }

func (e notFound) Error() string   { return e.err.Error() }
func (e notFound) Unwrap() []error { return []error{e.err, e.sentinel} }

// notFoundAs makes a store ErrNotFound match sentinel too.
func notFoundAs(err, sentinel error) error {
	if errors.Is(err, ErrNotFound) {
		return notFound{err, sentinel}
	}
	return err
}

func mediaErr(err error) error { return notFoundAs(err, catalog.ErrNotFound) }

// UpdateMedia runs fn in one durable transaction.
func (s *MediaStore) UpdateMedia(ctx context.Context, fn func(tx catalog.Tx) error) error {
	return s.db.Update(func(tx *Tx) error { return fn(mediaTx{tx}) })
}

// GetMedia returns one record.
func (s *MediaStore) GetMedia(ctx context.Context, id string) (media.Info, error) {
	info, err := Get[media.Info](s.db, Media, id)
	return info, mediaErr(err)
}

// ListMedia returns every record, in ID order.
func (s *MediaStore) ListMedia(ctx context.Context) ([]media.Info, error) {
	return List[media.Info](s.db, Media, "")
}

type mediaTx struct{ tx *Tx }

func (t mediaTx) Get(id string) (media.Info, error) {
	var info media.Info
	err := t.tx.Get(Media, id, &info)
	return info, mediaErr(err)
}

func (t mediaTx) Put(info media.Info) error { return t.tx.Put(Media, info.ID, info) }

func (t mediaTx) Delete(id string) error { return mediaErr(t.tx.Delete(Media, id)) }

func (t mediaTx) Audit(e audit.Entry) error { return t.tx.AppendAudit(e) }

// Users lists the schedules whose source is the clip.
func (t mediaTx) Users(id string) ([]catalog.Use, error) {
	var uses []catalog.Use
	err := t.tx.Each(Schedules, "", func(key string, raw []byte) error {
		var sc schedule.Schedule
		if err := json.Unmarshal(raw, &sc); err != nil {
			return fmt.Errorf("read schedule %s: %w", key, err)
		}
		if sc.Source.Kind == schedule.SourceMedia && sc.Source.MediaID == id {
			uses = append(uses, catalog.Use{ScheduleID: sc.ID, Name: sc.Name})
		}
		return nil
	})
	return uses, err
}
