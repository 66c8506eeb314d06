package uplink

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/mqtttest"
	"github.com/loalang/loalang/store"
)

// checkInOrder fails unless the receiver's first occurrences are exactly
// seqs from..to in order.
func checkInOrder(t *testing.T, evs []Event, from, to uint64) {
	t.Helper()
	if uint64(len(evs)) != to-from+1 {
		t.Fatalf("receiver has %d unique events, want %d", len(evs), to-from+1)
	}
	for i, e := range evs {
		if e.Seq != from+uint64(i) {
			t.Fatalf("event %d has seq %d, want %d (out of order or missing)", i, e.Seq, from+uint64(i))
		}
	}
}

// TestOutageOfASimulatedHour: the line to the broker is cut for an hour
// of the injected clock while events are generated throughout; after it
// returns every event arrives, in order, none twice after de-duplication,
// and the status showed the hour's backlog meanwhile.
func TestOutageOfASimulatedHour(t *testing.T) {
	brokerURL := mqtttest.StartBroker(t)
	line := newProxy(t, strings.TrimPrefix(brokerURL, "tcp://"))
	tp := testTopics(t)
	rcv := newReceiver(t, brokerURL, tp.Events())
	db := newDB(t)
	clk := newClock()
	ob, err := OpenOutbox(db, tp, 0, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: line.URL(), ClientID: "thon-3", Topics: tp, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Now: clk.Now}, ob, nil, testLog)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	eventually(t, 20*time.Second, "uplink connected", c.Connected)
	for i := range 10 {
		ob.Append("device", ClassTelemetry, map[string]any{"device": fmt.Sprint("spk-", i), "online": true})
	}
	eventually(t, 20*time.Second, "events before the outage", func() bool { return rcv.unique() == 10 })

	line.SetUp(false)
	eventually(t, 20*time.Second, "uplink sees the outage", func() bool { return !c.Connected() })
	// One event every 5 s of simulated time for an hour, of every class.
	const during = 720
	classes := []string{ClassTelemetry, ClassReport, ClassAudit}
	for i := range during {
		clk.Advance(5 * time.Second)
		if err := ob.Append("audit", classes[i%3], map[string]any{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Status()
	if st.Connected || st.Outbox.Depth != during || st.OldestPendingSeconds < 3595 {
		t.Fatalf("status during the outage: %+v", st)
	}
	if st.LastError == "" {
		t.Fatal("no last error during the outage")
	}
	if got := rcv.unique(); got != 10 {
		t.Fatalf("receiver got %d events through a cut line", got)
	}

	line.SetUp(true)
	eventually(t, 60*time.Second, "the backlog delivered", func() bool { return rcv.unique() == 10+during })
	eventually(t, 10*time.Second, "outbox empty", func() bool { return c.Status().Outbox.Depth == 0 })
	checkInOrder(t, rcv.events(), 1, 10+during)
	if s := c.Status(); s.Outbox.Sent != 10+during || s.OldestPendingSeconds != 0 || s.Connects < 2 {
		t.Fatalf("status after the drain: %+v", s)
	}
}

// TestOutboxFullPolicy: at the bound the oldest telemetry goes first,
// then reports; audit entries are never dropped (the outbox grows past
// the bound instead).
func TestOutboxFullPolicy(t *testing.T) {
	db := newDB(t)
	ob, err := OpenOutbox(db, testTopics(t), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	add := func(class string) {
		if err := ob.Append("x", class, class); err != nil {
			t.Fatal(err)
		}
	}
	classesOf := func() string {
		entries, _ := ob.Peek(100)
		var s []string
		for _, e := range entries {
			s = append(s, fmt.Sprintf("%d%c", e.Seq, e.Class[0]))
		}
		return strings.Join(s, " ")
	}
	add(ClassTelemetry) // 1
	add(ClassAudit)     // 2
	add(ClassReport)    // 3
	add(ClassTelemetry) // 4
	add(ClassAudit)     // 5: drops 1t
	if got := classesOf(); got != "2a 3r 4t 5a" {
		t.Fatalf("after 5: %s", got)
	}
	add(ClassAudit) // 6: drops 4t
	add(ClassAudit) // 7: drops 3r
	if got := classesOf(); got != "2a 5a 6a 7a" {
		t.Fatalf("after 7: %s", got)
	}
	add(ClassAudit) // 8: nothing droppable, grows
	if got := classesOf(); got != "2a 5a 6a 7a 8a" {
		t.Fatalf("after 8: %s", got)
	}
	if s := ob.Stats(); s.Depth != 5 || s.Dropped != 3 {
		t.Fatalf("stats %+v", s)
	}
	// The counters survive a reopen; sequence numbers are never reused.
	ob2, err := OpenOutbox(db, testTopics(t), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := ob2.Stats(); s.Depth != 5 {
		t.Fatalf("reopened depth %d", s.Depth)
	}
	ob2.Append("x", ClassTelemetry, 1)
	if entries, _ := ob2.Peek(100); entries[len(entries)-1].Seq != 9 {
		t.Fatalf("seq after reopen: %+v", entries[len(entries)-1])
	}
}

const (
	childEnv    = "LOALANG_UPLINK_DRAIN_CHILD"
	childDB     = "LOALANG_UPLINK_DRAIN_DB"
	childBroker = "LOALANG_UPLINK_DRAIN_BROKER"
)

// TestDrainChild is the child process of TestKillDuringDrain: it drains
// the outbox in its store to the broker until it is killed.
func TestDrainChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("child process of TestKillDuringDrain")
	}
	db, err := store.Open(os.Getenv(childDB), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := OpenOutbox(db, testTopics(t), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: os.Getenv(childBroker), ClientID: "thon-3", Topics: testTopics(t), Window: 8, MinBackoff: 20 * time.Millisecond}, ob, nil, testLog)
	if err != nil {
		t.Fatal(err)
	}
	c.Run(t.Context()) // until SIGKILL
}

// TestKillDuringDrain kills -9 a process in the middle of draining the
// outbox and checks nothing was lost: every event is either at the
// receiver or still in the reopened bbolt file, and a new drain delivers
// the rest in order.
func TestKillDuringDrain(t *testing.T) {
	brokerURL := mqtttest.StartBroker(t)
	tp := testTopics(t)
	rcv := newReceiver(t, brokerURL, tp.Events())
	path := filepath.Join(t.TempDir(), "loalang.db")
	db, err := store.Open(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := OpenOutbox(db, tp, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	const total = 3000
	err = db.Update(func(tx *store.Tx) error {
		for i := range total {
			if err := ob.AppendTx(tx, "audit", ClassAudit, map[string]any{"n": i, "pad": strings.Repeat("x", 200)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestDrainChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", childDB+"="+path, childBroker+"="+brokerURL)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL); cmd.Wait() })
	eventually(t, 60*time.Second, "the child to drain some", func() bool { return rcv.unique() >= 300 })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	atKill := rcv.unique()
	if atKill >= total {
		t.Fatalf("the child drained all %d before the kill; the test proves nothing", total)
	}

	db = openDB(t, path)
	ob, err = OpenOutbox(db, tp, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := ob.Peek(total)
	if err != nil {
		t.Fatal(err)
	}
	// Give in-flight deliveries to the receiver time to land, then check
	// the union covers every event.
	have := map[uint64]bool{}
	for _, e := range pending {
		have[e.Seq] = true
	}
	eventually(t, 20*time.Second, "every event at the receiver or in the outbox", func() bool {
		for _, e := range rcv.events() {
			have[e.Seq] = true
		}
		return len(have) == total
	})
	t.Logf("killed after %d of %d delivered; %d pending in the reopened file", atKill, total, len(pending))

	c, err := New(Config{URL: brokerURL, ClientID: "thon-3", Topics: tp, MinBackoff: 20 * time.Millisecond}, ob, nil, testLog)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	eventually(t, 60*time.Second, "the rest delivered", func() bool { return rcv.unique() == total })
	checkInOrder(t, rcv.events(), 1, total)
	eventually(t, 10*time.Second, "outbox empty", func() bool { return c.Status().Outbox.Depth == 0 })
}
