package broker

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestACLCheckDoesNotAllocate: the per-delivery ACL check of a cached
// topic (mochi calls it once per subscriber of every message) neither
// allocates nor changes its answer, for allowed and denied topics alike.
func TestACLCheckDoesNotAllocate(t *testing.T) {
	h0 := mustHash(t, "secret-0123456789")
	p, err := compile(testRules(h0, h0, h0))
	if err != nil {
		t.Fatal(err)
	}
	var ptr atomic.Pointer[policy]
	ptr.Store(p)
	h := &aclHook{policy: &ptr}
	h.Log = slog.New(slog.DiscardHandler)
	cl := &mqtt.Client{}
	cl.Properties.Username = []byte("d1")
	audio, other := "loalang/v1/demo/zone/z1/audio", "loalang/v1/demo/zone/z9/audio"
	if !h.OnACLCheck(cl, audio, false) || h.OnACLCheck(cl, other, false) {
		t.Fatalf("d1: zone z1 audio %v, zone z9 audio %v; want allowed, denied",
			h.OnACLCheck(cl, audio, false), h.OnACLCheck(cl, other, false))
	}
	if n := testing.AllocsPerRun(1000, func() {
		if !h.OnACLCheck(cl, audio, false) {
			t.Fatal("allowed topic denied")
		}
	}); n != 0 {
		t.Errorf("OnACLCheck of an allowed, cached topic: %.1f allocations per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { h.OnACLCheck(cl, other, false) }); n != 0 {
		t.Errorf("OnACLCheck of a denied, cached topic: %.1f allocations per call, want 0", n)
	}
	// A speaker in two zones gets both zones' audio in turn: the last-
	// decision entry changes on every check, still without allocating.
	audio2 := "loalang/v1/demo/zone/z2/audio"
	if !h.OnACLCheck(cl, audio2, false) {
		t.Fatalf("d1: zone z2 audio denied")
	}
	if n := testing.AllocsPerRun(1000, func() {
		if !h.OnACLCheck(cl, audio, false) || !h.OnACLCheck(cl, audio2, false) || h.OnACLCheck(cl, other, false) {
			t.Fatal("alternating topics: wrong decision")
		}
	}); n != 0 {
		t.Errorf("OnACLCheck alternating between cached topics: %.1f allocations per call, want 0", n)
	}
}

// TestACLCacheConcurrent: many goroutines checking new and cached topics at
// once (run with -race) get the same answers as the grants, and a client
// probing more than maxCachedDecisions topics keeps the cache bounded.
func TestACLCacheConcurrent(t *testing.T) {
	h0 := mustHash(t, "secret-0123456789")
	p, err := compile(testRules(h0, h0, h0))
	if err != nil {
		t.Fatal(err)
	}
	acct := p.accounts["d1"]
	topics := []string{"loalang/v1/demo/zone/z1/audio", "loalang/v1/demo/zone/z1/stream", "loalang/v1/demo/dev/d1/status",
		"loalang/v1/demo/dev/d2/status", "loalang/v1/demo/dev/d1/cmd"}
	for i := range 3 * maxCachedDecisions {
		topics = append(topics, fmt.Sprintf("loalang/v1/demo/probe/%d", i))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range topics {
				tp := topics[(i+g*37)%len(topics)]
				for _, write := range []bool{false, true} {
					if got, want := acct.allowed(tp, write), grantsAllow(acct.grants, tp, write); got != want {
						t.Errorf("%s write=%v: %v, want %v", tp, write, got, want)
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := len(*acct.reads.Load()); n > maxCachedDecisions {
		t.Errorf("read cache holds %d topics, bound %d", n, maxCachedDecisions)
	}
	if n := len(*acct.writes.Load()); n > maxCachedDecisions {
		t.Errorf("write cache holds %d topics, bound %d", n, maxCachedDecisions)
	}
}

// TestACLServiceAccountSkipsCache: the daemon's service account, granted
// everything under the site prefix, reads far more topics than the cache
// holds (every device's status, heartbeat, clock and report); its checks
// take the prefix path, never fill the cache, and agree with the grants,
// including the prefix's own level and topics outside it.
func TestACLServiceAccountSkipsCache(t *testing.T) {
	h0 := mustHash(t, "secret-0123456789")
	p, err := compile(testRules(h0, h0, h0))
	if err != nil {
		t.Fatal(err)
	}
	svc := p.accounts[ServiceUsername]
	if svc.readPrefix != "loalang/v1/demo/" || svc.writePrefix != "loalang/v1/demo/" {
		t.Fatalf("service prefixes %q %q", svc.readPrefix, svc.writePrefix)
	}
	if d := p.accounts["d1"]; d.readPrefix != "" || d.writePrefix != "" {
		t.Fatalf("device d1 got prefixes %q %q", d.readPrefix, d.writePrefix)
	}
	for i := range 3 * maxCachedDecisions {
		tp := fmt.Sprintf("loalang/v1/demo/dev/spk-%04d/report", i)
		if !svc.allowed(tp, false) || !svc.allowed(tp, true) {
			t.Fatalf("service denied %s", tp)
		}
	}
	if svc.reads.Load() != nil || svc.writes.Load() != nil {
		t.Errorf("service account checks filled the cache")
	}
	for _, c := range []struct {
		topic string
		write bool
	}{
		{"loalang/v1/demo", false}, {"loalang/v1/demo", true}, {"loalang/v1/other/x", false}, {"loalang/v1/other/x", true},
		{"loalang/v1/demo/zone/+/audio", false}, {"loalang/v1/demo/zone/+/audio", true}, {"loalang/v1/demo/#", false},
	} {
		if got, want := svc.allowed(c.topic, c.write), grantsAllow(svc.grants, c.topic, c.write); got != want {
			t.Errorf("%s write=%v: %v, grants say %v", c.topic, c.write, got, want)
		}
	}
	if w := svc.writeRule("loalang/v1/demo/dev/d1/cmd"); w != writeRuleOf(svc.grants, "loalang/v1/demo/dev/d1/cmd") {
		t.Errorf("service write rule %+v, grants say %+v", w, writeRuleOf(svc.grants, "loalang/v1/demo/dev/d1/cmd"))
	}
}
