package uplink

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/mqtttest"
)

// TestDraftsStatus: a draft submitted while the line is down is listed
// queued; once the broker has acknowledged its event it is sent (and the
// commune side has it); one the full outbox drops unsent is dropped; the
// list is newest first.
func TestDraftsStatus(t *testing.T) {
	brokerURL := mqtttest.StartBroker(t)
	line := newProxy(t, strings.TrimPrefix(brokerURL, "tcp://"))
	line.SetUp(false)
	tp := testTopics(t)
	rcv := newReceiver(t, brokerURL, tp.Events())
	ob, err := OpenOutbox(newDB(t), tp, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	if err := ob.SubmitDraft(DraftData{ID: "d1", Author: "truong", Title: "Mất nước", Text: "Thôn 1 mất nước.", Urgency: "routine", Zones: []string{"a"}, Created: at}); err != nil {
		t.Fatal(err)
	}
	ob.Append("device", ClassTelemetry, map[string]any{"online": true}) // not a draft
	if err := ob.SubmitDraft(DraftData{ID: "d2", Author: "truong", Text: "Họp thôn.", Urgency: "emergency", Created: at.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	statuses := func() string {
		t.Helper()
		list, err := ob.Drafts()
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, d := range list {
			s = append(s, d.ID+":"+d.Status)
		}
		return strings.Join(s, " ")
	}
	if got := statuses(); got != "d2:queued d1:queued" {
		t.Fatalf("before connecting: %s", got)
	}

	c, err := New(Config{URL: line.URL(), ClientID: "thon-3", Topics: tp, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, ob, nil, testLog)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	line.SetUp(true)
	eventually(t, 20*time.Second, "drafts acknowledged", func() bool { return statuses() == "d2:sent d1:sent" })
	eventually(t, 20*time.Second, "drafts at the commune side", func() bool { return rcv.unique() == 3 })
	list, _ := ob.Drafts()
	if d := list[1]; d.Sent.IsZero() || d.Title != "Mất nước" || d.Author != "truong" || !d.Created.Equal(at) || len(d.Zones) != 1 {
		t.Fatalf("kept draft %+v", d)
	}
	for _, e := range rcv.events() {
		if e.Kind == KindDraft && !strings.Contains(string(e.Data), `"id":"d`) {
			t.Errorf("draft event %s", e.Data)
		}
	}

	// A full outbox (of 2, not sending) drops the oldest report: a draft
	// is one.
	small, err := OpenOutbox(newDB(t), tp, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	small.SubmitDraft(DraftData{ID: "d3", Text: "x", Urgency: "routine"})
	small.Append("x", ClassAudit, 1)
	small.Append("x", ClassAudit, 2)
	if list, err := small.Drafts(); err != nil || len(list) != 1 || list[0].Status != DraftDropped {
		t.Fatalf("after the drop: %+v %v", list, err)
	}
}

// TestDraftsBounded: only the newest DraftsKept drafts are kept.
func TestDraftsBounded(t *testing.T) {
	ob, err := OpenOutbox(newDB(t), testTopics(t), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range DraftsKept + 5 {
		if err := ob.SubmitDraft(DraftData{ID: fmt.Sprint("d", i), Text: "x", Urgency: "routine"}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := ob.Drafts()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != DraftsKept || list[0].ID != fmt.Sprint("d", DraftsKept+4) || list[len(list)-1].ID != "d5" {
		t.Fatalf("kept %d drafts, %s … %s", len(list), list[0].ID, list[len(list)-1].ID)
	}
	if s := ob.Stats(); s.Depth != DraftsKept+5 {
		t.Fatalf("outbox depth %d: forgetting a draft must not drop its event", s.Depth)
	}
}
