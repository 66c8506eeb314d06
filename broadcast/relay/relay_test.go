package relay

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/internal/egress"
)

// collector is the live broadcast's side of Run: it keeps what it is fed.
type collector struct {
	mu   sync.Mutex
	pkts [][]byte
	at   []time.Time
}

func (c *collector) WritePacket(p []byte, at time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pkts = append(c.pkts, p)
	c.at = append(c.at, at)
	return nil
}

func (c *collector) ID() string { return "b-test" }

// TestRunFillsSilenceAndAuditsGap: an upstream that only answers 503 for a
// 1.5 s window gets the lead played, then silence paced at 20 ms a packet
// (never a burst), retries with backoff, and one schedule.relay_gap entry
// when the window ends in the gap, with the URL's token redacted.
func TestRunFillsSilenceAndAuditsGap(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "station off the air", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	client := Client(egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var entries []audit.Entry
	lead, silence := [][]byte{{1}, {2}, {3}}, []byte{0}
	cfg := Config{URL: srv.URL + "/live.mp3?token=secret", Target: "radio", Actor: "scheduler", Client: client, UserAgent: "loalangd/test",
		Bitrate: 24000, Lead: lead, Silence: silence, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Audit: func(e audit.Entry) { mu.Lock(); entries = append(entries, e); mu.Unlock() }}
	sink := &collector{}
	start := time.Now()
	window := 1500 * time.Millisecond
	Run(context.Background(), sink, cfg, start.Add(window))

	if len(sink.pkts) < 4 || sink.pkts[0][0] != 1 || sink.pkts[1][0] != 2 || sink.pkts[2][0] != 3 {
		t.Fatalf("lead not played first: %v", sink.pkts[:min(len(sink.pkts), 4)])
	}
	for i, p := range sink.pkts[3:] {
		if len(p) != 1 || p[0] != 0 {
			t.Fatalf("packet %d after the lead is not silence: %v", i+3, p)
		}
	}
	for i := 1; i < len(sink.at); i++ {
		if d := sink.at[i].Sub(sink.at[i-1]); d < 20*time.Millisecond {
			t.Fatalf("packets %d and %d stamped %v apart: a burst", i-1, i, d)
		}
	}
	// The window minus the 1 s prebuffer, at 20 ms a packet, give or take
	// a loaded machine's skips.
	if n := len(sink.pkts); n > int(window/(20*time.Millisecond))+1 {
		t.Fatalf("%d packets in a %v window", n, window)
	}
	if hits.Load() < 2 {
		t.Fatalf("upstream tried %d times, want retries", hits.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(entries) != 1 {
		t.Fatalf("%d audit entries, want one gap: %+v", len(entries), entries)
	}
	e := entries[0]
	if e.Action != audit.ScheduleRelayGap || e.Target != "radio" || e.Actor != "scheduler" || e.Detail["resumed"] != false {
		t.Fatalf("gap entry: %+v", e)
	}
	if u, _ := e.Detail["url"].(string); u == "" || u != egress.Redact(cfg.URL) {
		t.Fatalf("gap url %q, want the redacted %q", u, egress.Redact(cfg.URL))
	}
	t.Logf("%d packets (%d lead), %d upstream attempts, gap %v ms", len(sink.pkts), len(lead), hits.Load(), e.Detail["gap_ms"])
}
