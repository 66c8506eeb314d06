package uplink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/store"
)

var testLog = slog.New(slog.DiscardHandler)

func openDB(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newDB(t testing.TB) *store.DB { return openDB(t, filepath.Join(t.TempDir(), "loalang.db")) }

func testTopics(t testing.TB) Topics {
	tp, err := NewTopics("hanoi", "xa-1", "thon-3")
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// seedKey returns a deterministic key, so golden envelopes are stable
// (Ed25519 signatures are deterministic, RFC 8032 §5.1.6).
func seedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// clock is an injectable clock for the simulated hour.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 9, 15, 8, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// golden compares got with testdata/name, rewriting it with UPDATE_GOLDEN=1.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n got %s\nwant %s", name, got, want)
	}
}

// proxy forwards TCP to a broker and can cut the line: an uplink outage
// with the broker itself up.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	mu     sync.Mutex
	up     bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, up: true}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.SetUp(false); p.wg.Wait() })
	return p
}

func (p *proxy) URL() string { return "tcp://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if !p.up {
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, u)
		p.wg.Add(2)
		p.mu.Unlock()
		go func() { defer p.wg.Done(); io.Copy(u, c); u.Close() }()
		go func() { defer p.wg.Done(); io.Copy(c, u); c.Close() }()
	}
}

// SetUp opens or cuts the line; cutting closes every open connection.
func (p *proxy) SetUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// receiver is the commune side: it subscribes to the events and
// de-duplicates by id as docs/protocol.md tells receivers to.
type receiver struct {
	mu    sync.Mutex
	all   int // messages received, duplicates included
	seen  map[string]bool
	order []Event // first occurrences, in arrival order
}

func newReceiver(t testing.TB, brokerURL, topic string) *receiver {
	t.Helper()
	r := &receiver{seen: map[string]bool{}}
	opts := mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("commune-" + t.Name()).SetOrderMatters(true)
	pc := mqtt.NewClient(opts)
	if tok := pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("receiver connect: %v", tok.Error())
	}
	tok := pc.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		var e Event
		if err := json.Unmarshal(m.Payload(), &e); err != nil {
			t.Errorf("receiver: bad event %q: %v", m.Payload(), err)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.all++
		if !r.seen[e.ID] {
			r.seen[e.ID] = true
			r.order = append(r.order, e)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("receiver subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(100) })
	return r
}

func (r *receiver) unique() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

func (r *receiver) events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.order...)
}

// runClient runs a client until the test ends.
func runClient(t testing.TB, c *Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

type (
	ed25519PublicKey  = ed25519.PublicKey
	ed25519PrivateKey = ed25519.PrivateKey
)

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
