package daemon

import (
	"context"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/uplink"
	"github.com/loalang/loalang/web"
	"github.com/loalang/loalang/web/api"
)

// uplinkDrafts is the village heads' drafts for the commune (web's
// UplinkDrafts), kept by the uplink's outbox; web.ErrUplinkOff while
// uplink.url is empty.
type uplinkDrafts struct{ d *Daemon }

func (u uplinkDrafts) Submit(_ context.Context, author string, dr api.UplinkDraft) (string, error) {
	if u.d.up == nil {
		return "", web.ErrUplinkOff
	}
	id := auth.RandomSecret(9)
	err := u.d.up.outbox.SubmitDraft(uplink.DraftData{ID: id, Author: author, Title: dr.Title,
		Text: dr.Text, Urgency: dr.Urgency, Zones: dr.Zones, Created: time.Now().UTC()})
	return id, err
}

func (u uplinkDrafts) List(context.Context) ([]api.SubmittedDraft, error) {
	if u.d.up == nil {
		return nil, web.ErrUplinkOff
	}
	kept, err := u.d.up.outbox.Drafts()
	if err != nil {
		return nil, err
	}
	out := make([]api.SubmittedDraft, 0, len(kept))
	for _, k := range kept {
		out = append(out, api.SubmittedDraft{ID: k.ID, Title: k.Title, Text: k.Text, Urgency: k.Urgency, Zones: k.Zones,
			Author: k.Author, Submitted: k.Created, Status: k.Status, Sent: k.Sent})
	}
	return out, nil
}
