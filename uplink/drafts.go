package uplink

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/loalang/loalang/store"
)

// DraftsKept bounds the submitted drafts the village keeps for its own
// page: the oldest beyond it are forgotten (their events are unaffected).
const DraftsKept = 200

// Draft statuses as the village knows them. The village never learns the
// commune's decision: an editor takes a draft over as a new commune draft,
// whose command does not name it (docs/commune.md).
const (
	// DraftQueued is a draft whose event waits in the outbox.
	DraftQueued = "queued"
	// DraftSent is a draft whose event the upstream broker acknowledged.
	DraftSent = "sent"
	// DraftDropped is a draft whose event the full outbox dropped unsent
	// (docs/uplink.md, "Outbox").
	DraftDropped = "dropped"
)

// SubmittedDraft is a kept draft and where its event is.
type SubmittedDraft struct {
	DraftData
	// Status is DraftQueued, DraftSent or DraftDropped.
	Status string
	// Sent is when the broker acknowledged the event, zero until then.
	Sent time.Time
}

// SubmitDraft queues d as a "draft" event and keeps it for the village's
// page, in one transaction.
func (o *Outbox) SubmitDraft(d DraftData) error {
	raw, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("submit draft: %w", err)
	}
	err = o.db.Update(func(tx *store.Tx) error {
		seq, err := o.appendTx(tx, KindDraft, ClassReport, json.RawMessage(raw), "")
		if err != nil {
			return err
		}
		return tx.PutDraft(store.DraftEntry{Seq: seq, Data: raw}, DraftsKept)
	})
	if err != nil {
		return fmt.Errorf("submit draft %s: %w", d.ID, err)
	}
	return nil
}

// Drafts returns the kept drafts, newest first.
func (o *Outbox) Drafts() ([]SubmittedDraft, error) {
	var out []SubmittedDraft
	err := o.db.View(func(tx *store.Tx) error {
		return tx.EachDraft(func(e store.DraftEntry) (bool, error) {
			d := SubmittedDraft{Status: DraftSent, Sent: e.Sent}
			if err := json.Unmarshal(e.Data, &d.DraftData); err != nil {
				return false, fmt.Errorf("draft %d: %w", e.Seq, err)
			}
			if e.Sent.IsZero() {
				pending, err := tx.InOutbox(e.Seq)
				if err != nil {
					return false, err
				}
				d.Status = DraftDropped
				if pending {
					d.Status = DraftQueued
				}
			}
			out = append(out, d)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list drafts: %w", err)
	}
	return out, nil
}
