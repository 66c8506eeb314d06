package uplink

import (
	"context"
	"path/filepath"
	"testing"
)

// TestPlayedReportAfterReopen: the link from a broadcast to its command is
// in the store, so a handler made after the bbolt file is closed and
// reopened (a restart) still knows the broadcast is pending and queues its
// "played" report, once however often the end is seen.
func TestPlayedReportAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loalang.db")
	clk := newClock()
	tp := testTopics(t)
	province := seedKey(1)
	keys := Keys{Province: []ed25519PublicKey{province.Public().(ed25519PublicKey)}}

	db := openDB(t, path)
	ob, err := OpenOutbox(db, tp, 0, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	h := NewCommands(CommandsConfig{Topics: tp, Keys: keys, Now: clk.Now}, db, ob, &recordingPlayer{}, testLog)
	c := testCommand(clk.Now())
	c.ID, c.Nonce = "before-restart", NewNonce()
	env, err := Sign(c, province)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if p := h.Pending(); len(p) != 1 || p[0] != "b1" {
		t.Fatalf("pending %v, want [b1]", p)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	ob, err = OpenOutbox(db, tp, 0, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	h = NewCommands(CommandsConfig{Topics: tp, Keys: keys, Now: clk.Now}, db, ob, &recordingPlayer{}, testLog)
	if p := h.Pending(); len(p) != 1 || p[0] != "b1" {
		t.Fatalf("pending after reopen %v, want [b1]", p)
	}
	h.BroadcastEnded("b1", "stopped", "controller shut down", []map[string]int{{"frames_played": 52}})
	h.BroadcastEnded("b1", "stopped", "controller shut down", nil) // seen again: no second report
	h.BroadcastEnded("b9", "done", "", nil)                        // not a command's broadcast
	if p := h.Pending(); len(p) != 0 {
		t.Fatalf("pending after the report %v", p)
	}
	var played []Report
	for _, r := range reports(t, ob) {
		if r.Outcome == OutcomePlayed {
			played = append(played, r)
		}
	}
	if len(played) != 1 || played[0].CommandID != "before-restart" || played[0].Level != "province" || played[0].State != "stopped" || played[0].Devices == nil {
		t.Fatalf("played reports %+v, want one for before-restart with its delivery", played)
	}
	if got := h.Seen()[OutcomePlayed]; got != 1 {
		t.Fatalf("played counted %d times", got)
	}
}
