package commune

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/pion/webrtc/v4/pkg/media"
	bolt "go.etcd.io/bbolt"

	"github.com/loalang/loalang/internal/whipphone"
	"github.com/loalang/loalang/uplink"
)

type liveSinkRec struct {
	mu     sync.Mutex
	pkts   [][]byte
	at     []time.Time
	closed bool
}

func (s *liveSinkRec) WritePacket(p []byte, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkts, s.at = append(s.pkts, p), append(s.at, at)
	return nil
}
func (s *liveSinkRec) Close() error { s.mu.Lock(); s.closed = true; s.mu.Unlock(); return nil }

// TestLiveChunkerToVillageReceiver feeds ten packets through the commune's
// chunker into a village's uplink.LiveReceiver: the village gets all ten,
// in order, with their capture times, and the End chunk closes it.
func TestLiveChunkerToVillageReceiver(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tp := uplink.Topics{Province: "hanoi", Commune: "xa-1", Site: "thon-3"}
	rx := uplink.NewLiveReceiver(tp, []ed25519.PublicKey{pub}, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sink := &liveSinkRec{}
	ended := make(chan string, 1)
	if err := rx.Start("s1", sink, time.Hour, func(r string) { ended <- r }); err != nil {
		t.Fatal(err)
	}
	var envs int
	ch := newLiveChunker("s1", key, func(_ context.Context, env []byte) error {
		envs++
		return rx.Deliver(tp.Live("s1"), env)
	})
	ctx := context.Background()
	t0 := time.Date(2026, 9, 15, 8, 0, 0, 0, time.UTC)
	for i := range 10 {
		if err := ch.WritePacket(ctx, []byte{0x78, byte(i)}, t0.Add(time.Duration(i)*uplink.PacketDuration)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.End(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-ended; r != uplink.LiveEndedByCommune {
		t.Fatalf("ended by %q", r)
	}
	if err := ch.WritePacket(ctx, []byte{1}, t0); err == nil {
		t.Fatal("a packet after End was accepted")
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if envs != 3 || len(sink.pkts) != 10 || !sink.closed {
		t.Fatalf("%d chunks, %d packets, closed %v", envs, len(sink.pkts), sink.closed)
	}
	for i, p := range sink.pkts {
		if p[1] != byte(i) || !sink.at[i].Equal(t0.Add(time.Duration(i)*uplink.PacketDuration)) {
			t.Fatalf("packet %d: %v at %s", i, p, sink.at[i])
		}
	}
}

// TestLiveSpeechRecordAndVanishedBrowser runs the commune's WHIP endpoint
// against a real Mosquitto and a pion peer as the approver's browser: the
// signed live command reaches the village's command topic with the
// session, zones and urgency asked; the browser's packets come out in
// order as signed chunks of the session on the live topic; when the
// browser vanishes (its socket closed: no DELETE, no DTLS close) ICE
// notices, the commune sends the End chunk and the record is ended with
// the reason; a speech that reaches its longest duration is ended by the
// commune ("expired", with its End chunk); and a record a crash left on
// air is ended at the next start.
func TestLiveSpeechRecordAndVanishedBrowser(t *testing.T) {
	broker := startMosquitto(t)
	cfg := testConfig(t, "tcp://"+broker)
	cfg.WebRTC.UDPPort, cfg.WebRTC.ListenIPs, cfg.WebRTC.LoopbackCandidates = 0, []string{"127.0.0.1"}, true
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := LiveMount(s); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	waitFor(t, 20*time.Second, "commune connected", func() bool { return s.Connected() })

	// A village's view: its command topic and the commune's live topics.
	tops, _ := uplink.NewTopics("hanoi", "xa-1", "thon-1")
	ct := tops.CommandTopics()
	cmds, chunks := make(chan []byte, 16), make(chan []byte, 256)
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("thon-1-listener"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	for filter, ch := range map[string]chan []byte{ct[len(ct)-1]: cmds, tops.LiveFilter(): chunks} {
		if tok := sub.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) { ch <- m.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", filter, tok.Error())
		}
	}

	raw, _ := os.ReadFile(filepath.Join(cfg.DataDir, AdminPassFile))
	admin := login(t, srv.URL, "admin", strings.TrimSpace(string(raw)))
	admin.do("POST", "/api/v1/commune/users", map[string]any{"username": "dy", "password": "approver-pass-1", "role": "approver"})
	ap := login(t, srv.URL, "dy", "approver-pass-1")

	// The browser: a send-only Opus track on its own UDP socket, which
	// the test closes to make it vanish.
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	browser := whipphone.New(t, sock)
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/commune/live?villages=thon-1&zones=a&urgency=emergency", strings.NewReader(browser.Offer))
	req.Header.Set("Authorization", "Bearer "+ap.token)
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/api/v1/commune/live/")
	if resp.StatusCode != http.StatusCreated || id == "" {
		t.Fatalf("POST live: %d %s", resp.StatusCode, answer)
	}
	browser.Connect(t, string(answer), 30*time.Second)

	keys, _ := uplink.ParseKeys(nil, []string{uplink.PublicKeyString(s.key.Public().(ed25519.PublicKey))})
	select {
	case env := <-cmds:
		cmd, err := uplink.Open(env, keys)
		if err != nil || cmd.ID != id || cmd.Live == nil || cmd.Live.Session != id || cmd.Urgency != uplink.UrgencyEmergency ||
			!slices.Equal(cmd.Target.Zones, []string{"a"}) || !slices.Equal(cmd.Target.Villages, []string{"thon-1"}) {
			t.Fatalf("live command %+v: %v", cmd, err)
		}
		if err := cmd.Check(time.Now(), tops); err != nil {
			t.Fatalf("the village would refuse it: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no live command on thon-1's command topic")
	}

	// 20 ms mono CELT packets (TOC 0xf8, RFC 6716 §3.1), numbered, sent
	// until three chunks (12 packets) came out.
	var got [][]byte
	var seqs []uint64
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 250; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if browser.Track.WriteSample(media.Sample{Data: []byte{0xf8, byte(i), 0xaa, 0x55}, Duration: 20 * time.Millisecond}) != nil {
				return
			}
		}
	}()
	readChunk := func() uplink.LiveChunk {
		t.Helper()
		select {
		case env := <-chunks:
			c, err := uplink.OpenChunk(env, keys.Commune)
			if err != nil {
				t.Fatalf("chunk: %v", err)
			}
			return c
		case <-time.After(20 * time.Second):
			t.Fatal("no live chunk")
			return uplink.LiveChunk{}
		}
	}
	for len(got) < 12 {
		c := readChunk()
		if c.Session != id || c.End {
			t.Fatalf("chunk %+v", c)
		}
		seqs = append(seqs, c.Seq)
		got = append(got, c.Packets...)
	}
	close(stop)
	<-sent
	for i := 1; i < len(got); i++ {
		if got[i][1] != got[i-1][1]+1 {
			t.Fatalf("packets out of order or lost on loopback: % x after % x", got[i], got[i-1])
		}
	}
	if seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 {
		t.Fatalf("chunk seqs %v", seqs)
	}

	// The browser vanishes (a phone out of Wi-Fi): no DELETE, no DTLS
	// close, nothing more on its socket.
	sock.Close()
	for c := readChunk(); !c.End; c = readChunk() {
	}
	var d Draft
	waitFor(t, 30*time.Second, "the record ended after the browser vanished", func() bool {
		s.db.bolt.View(func(tx *bolt.Tx) error { return get(tx, bDrafts, id, &d) })
		return d.Status == StatusEnded && d.Reason != ""
	})
	// ICE notices within its 2 s disconnection (or 5 s failure) timeout.
	if !strings.HasPrefix(d.Reason, "connection ") {
		t.Fatalf("ended for %q, not the browser's vanishing", d.Reason)
	}
	if d.Kind != KindLive || d.CreatedBy != "dy" || d.Ended.IsZero() {
		t.Fatalf("record %+v", d)
	}
	_, body := admin.do("GET", "/api/v1/commune/audit", nil)
	if !strings.Contains(string(body), `"action":"live.start"`) || !strings.Contains(string(body), `"action":"live.end"`) {
		t.Fatalf("live not audited: %s", body)
	}

	// A speech that reaches its longest duration is ended by the commune.
	s.liveMax = 2 * time.Second
	long := whipphone.New(t, nil)
	req, _ = http.NewRequest("POST", srv.URL+"/api/v1/commune/live?villages=thon-2", strings.NewReader(long.Offer))
	req.Header.Set("Authorization", "Bearer "+ap.token)
	req.Header.Set("Content-Type", "application/sdp")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	answer, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	longID := strings.TrimPrefix(resp.Header.Get("Location"), "/api/v1/commune/live/")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST live: %d %s", resp.StatusCode, answer)
	}
	long.Connect(t, string(answer), 30*time.Second)
	waitFor(t, 30*time.Second, "the speech ended at its longest duration", func() bool {
		s.db.bolt.View(func(tx *bolt.Tx) error { return get(tx, bDrafts, longID, &d) })
		return d.Status == StatusEnded
	})
	if d.Reason != "expired" || d.Ended.Sub(d.Created) < 2*time.Second {
		t.Fatalf("the long speech: %+v", d)
	}
	for c := readChunk(); !(c.Session == longID && c.End); c = readChunk() {
	}

	// A record a crash left on air is ended at the next start.
	orphan := Draft{ID: "l-orphan", Kind: KindLive, Status: StatusLive, Villages: []string{"thon-1"}, Urgency: uplink.UrgencyRoutine}
	if err := s.db.bolt.Update(func(tx *bolt.Tx) error { return put(tx, bDrafts, orphan.ID, orphan) }); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	s.Close()
	s2, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.db.bolt.View(func(tx *bolt.Tx) error { return get(tx, bDrafts, orphan.ID, &orphan) })
	if orphan.Status != StatusEnded || orphan.Reason != "commune restarted" {
		t.Fatalf("orphan after restart: %+v", orphan)
	}
}
