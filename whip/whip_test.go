package whip

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/ogg"
	"github.com/loalang/loalang/internal/whipphone"
)

// capture is the engine's MQTT publisher: it keeps the audio frames of
// zone a, decoded with the wire contract.
type capture struct {
	mu      sync.Mutex
	audio   string
	packets [][]byte
}

func (c *capture) Publish(_ context.Context, topic string, _ byte, _ bool, payload []byte) error {
	if topic != c.audio {
		return nil
	}
	var f wire.Frame
	if err := f.UnmarshalBinary(payload); err != nil {
		return err
	}
	c.mu.Lock()
	c.packets = append(c.packets, f.Packets...)
	c.mu.Unlock()
	return nil
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.packets)
}

type zones struct{}

func (zones) ZoneExists(z string) bool                              { return z == "a" }
func (zones) Members(zs []string) []string                          { return []string{"s1"} }
func (zones) Online(string) bool                                    { return true }
func (zones) SaveBroadcast(context.Context, broadcast.Record) error { return nil }

func eventually(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !ok(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartSinkRefused: a service without an engine (the commune's) has
// no Start; an Opener's error comes back from StartSink unchanged, the
// peer connection is torn down (goleak checks its goroutines) and no
// archive is created.
func TestStartSinkRefused(t *testing.T) {
	dir := t.TempDir()
	svc, err := New(Config{ArchiveDir: dir, ListenIPs: []string{"127.0.0.1"}, LoopbackCandidates: true})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	offer := whipphone.New(t, nil).Offer
	if _, err := svc.Start(context.Background(), offer, "head", broadcast.Request{Zones: []string{"a"}}); err == nil {
		t.Fatal("Start without an engine succeeded")
	}
	refused := errors.New("unknown village")
	if _, err := svc.StartSink(context.Background(), offer, "approver", func(context.Context) (Sink, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Fatalf("StartSink: %v, want the opener's error", err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("archive files after a refusal: %v", files)
	}
}

// TestWHIPSession runs the ingest against a real broadcast engine and a
// real pion sender over loopback: the offer is answered with 20 ms ptime,
// the phone's Opus packets reach the zone's audio frames untouched and the
// Ogg archive, only the creator (or an admin) may hang up, and the end is
// audited once.
func TestWHIPSession(t *testing.T) {
	pub := &capture{audio: wire.MustTopics("demo").ZoneAudio("a")}
	eng, err := broadcast.New(broadcast.Config{Site: "demo"}, broadcast.Deps{Publisher: pub, Directory: zones{}, Recorder: zones{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ran
		eng.Close()
	})

	var mu sync.Mutex
	var entries []audit.Entry
	dir := t.TempDir()
	svc, err := New(Config{Engine: eng, ArchiveDir: dir, ListenIPs: []string{"127.0.0.1"}, LoopbackCandidates: true,
		Audit: func(e audit.Entry) { mu.Lock(); entries = append(entries, e); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if svc.Addr() == nil {
		t.Fatal("own ICE socket has no address")
	}

	if _, err := svc.Start(context.Background(), "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "head", broadcast.Request{Zones: []string{"a"}}); !errors.Is(err, ErrBadOffer) {
		t.Fatalf("video offer: %v, want ErrBadOffer", err)
	}

	ph := whipphone.New(t, nil)
	offer := ph.Offer
	st, err := svc.Start(context.Background(), offer, "head",
		broadcast.Request{Zones: []string{"a"}, Actor: "head", Origin: broadcast.OriginLive})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Answer, "a=ptime:20") || st.Archive != filepath.Join(dir, st.ID+".opus") {
		t.Fatalf("answer or archive wrong: %s\n%s", st.Archive, st.Answer)
	}
	ph.Connect(t, st.Answer, 30*time.Second)

	// 20 ms mono CELT packets (TOC 0xf8, RFC 6716 §3.1), each numbered.
	const n = 100
	sent := make([][]byte, n)
	for i := range sent {
		sent[i] = []byte{0xf8, byte(i), 0xaa, 0x55}
	}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for _, p := range sent {
			<-tick.C
			if ph.Track.WriteSample(media.Sample{Data: p, Duration: 20 * time.Millisecond}) != nil {
				return
			}
		}
	}()
	eventually(t, 30*time.Second, "packets at the zone", func() bool { return pub.count() >= n/2 })

	if err := svc.Hangup(st.ID, "other-head", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("hangup by another head: %v, want ErrNotFound", err)
	}
	eventually(t, 30*time.Second, "every packet at the zone", func() bool { return pub.count() >= n })
	if err := svc.Hangup(st.ID, "head", false); err != nil {
		t.Fatal(err)
	}
	if err := svc.Hangup(st.ID, "head", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second hangup: %v", err)
	}
	pub.mu.Lock()
	got := pub.packets
	pub.mu.Unlock()
	// Every packet arrives once, in order and untouched (RTP over loopback
	// loses none once connected).
	if len(got) != n {
		t.Fatalf("%d packets at the zone, want %d", len(got), n)
	}
	for i, p := range sent {
		if !bytes.Equal(got[i], p) {
			t.Fatalf("zone packet %d is % x, want % x", i, got[i], p)
		}
	}
	eventually(t, 10*time.Second, "live.end audit", func() bool { mu.Lock(); defer mu.Unlock(); return len(entries) == 1 })
	if e := entries[0]; e.Action != audit.LiveEnd || e.Actor != "head" || e.Target != st.ID || e.Detail["reason"] != "hangup" {
		t.Errorf("audit %+v", e)
	}

	// The archive is an Ogg Opus stream holding the same packets.
	svc.Close()
	raw, err := os.ReadFile(st.Archive)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("OggS")) || !bytes.Contains(raw, []byte("OpusHead")) || !bytes.Contains(raw, sent[n-1]) {
		t.Fatalf("archive of %d bytes lacks the header or the last packet", len(raw))
	}
	if last := bytes.LastIndex(raw, []byte("OggS")); raw[last+5]&ogg.EOS == 0 {
		t.Error("archive's last page is not flagged EOS")
	}
	if _, err := svc.Start(context.Background(), offer, "head", broadcast.Request{Zones: []string{"a"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
}
