package store

import (
	"context"
	"fmt"

	"github.com/loalang/loalang/audit"
)

// CameraStore implements camera.RecordStore over the Cameras bucket:
// records as JSON under their camera ID. R is camera.Record; the type is
// generic only so that the store does not link the camera package's
// WebRTC and RTSP stack.
type CameraStore[R any] struct{ db *DB }

// NewCameraStore returns the camera registry's store over db.
func NewCameraStore[R any](db *DB) *CameraStore[R] { return &CameraStore[R]{db: db} }

// Records returns every stored record, in ID order.
func (s *CameraStore[R]) Records(ctx context.Context) ([]R, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return List[R](s.db, Cameras, "")
}

// PutRecords stores recs under their IDs with entries, in one durable
// transaction.
func (s *CameraStore[R]) PutRecords(ctx context.Context, recs map[string]R, entries ...audit.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *Tx) error {
		for id, r := range recs {
			if err := tx.Put(Cameras, id, r); err != nil {
				return fmt.Errorf("put camera %s: %w", id, err)
			}
		}
		if len(entries) == 0 {
			return nil
		}
		return tx.AppendAudit(entries...)
	})
}
