package uplink

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func testChunk() LiveChunk {
	return LiveChunk{Session: "live-1", Seq: 1, Captured: time.Date(2026, 9, 15, 8, 0, 0, 0, time.UTC),
		Packets: [][]byte{{0x78, 1, 2}, {0x78, 3, 4}, {0x78, 5}, {0x78, 6}}}
}

func liveCommand() Command {
	return Command{ID: "live-1", Nonce: strings.Repeat("ab", 16), Level: LevelCommune, Sender: "xa-1",
		Issued: time.Date(2026, 9, 15, 8, 0, 0, 0, time.UTC), Expires: time.Date(2026, 9, 15, 8, 30, 0, 0, time.UTC),
		Target: Target{Province: "hanoi", Commune: "xa-1", Villages: []string{"thon-3"}}, Urgency: UrgencyRoutine,
		Live: &LiveRef{Session: "live-1"}}
}

func TestChunkRoundTrip(t *testing.T) {
	key := seedKey(2)
	raw, err := SignChunk(testChunk(), key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenChunk(raw, []ed25519.PublicKey{seedKey(9).Public().(ed25519.PublicKey), key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	want := testChunk()
	if got.V != 1 || got.Session != want.Session || got.Seq != 1 || !got.Captured.Equal(want.Captured) || len(got.Packets) != 4 || !bytes.Equal(got.Packets[3], want.Packets[3]) {
		t.Fatalf("round trip: got %+v", got)
	}
	end := LiveChunk{Session: "live-1", Seq: 2, Captured: want.Captured, End: true}
	raw, err = SignChunk(end, key)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenChunk(raw, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}); err != nil || !got.End {
		t.Fatalf("end chunk: %+v, %v", got, err)
	}
}

func TestChunkWrongKeyAndTampering(t *testing.T) {
	raw, err := SignChunk(testChunk(), seedKey(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenChunk(raw, []ed25519.PublicKey{seedKey(3).Public().(ed25519.PublicKey)}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := OpenChunk(raw, nil); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("no keys: %v", err)
	}
	// Change one packet byte inside the signed bytes.
	var env ChunkEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	c := testChunk()
	c.V = 1
	c.Packets[0][1] = 9
	b, _ := json.Marshal(c)
	env.Chunk = base64.StdEncoding.EncodeToString(b)
	forged, _ := json.Marshal(env)
	if _, err := OpenChunk(forged, []ed25519.PublicKey{seedKey(2).Public().(ed25519.PublicKey)}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered packet: %v", err)
	}
}

// TestChunkAndCommandContextsDiffer checks that a signature made for one
// kind of message never verifies as the other, though the same key signs
// both: a chunk's bytes signed as a command, and a command's as a chunk.
func TestChunkAndCommandContextsDiffer(t *testing.T) {
	key := seedKey(2)
	keys := Keys{Commune: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}}
	cmdEnv, err := Sign(liveCommand(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cmdEnv, keys); err != nil {
		t.Fatalf("live command does not open: %v", err)
	}
	var ce Envelope
	json.Unmarshal(cmdEnv, &ce)
	asChunk, _ := json.Marshal(ChunkEnvelope{Chunk: ce.Cmd, Sig: ce.Sig})
	if _, err := OpenChunk(asChunk, keys.Commune); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a command opened as a chunk: %v", err)
	}
	chunkEnv, err := SignChunk(testChunk(), key)
	if err != nil {
		t.Fatal(err)
	}
	var ch ChunkEnvelope
	json.Unmarshal(chunkEnv, &ch)
	asCmd, _ := json.Marshal(Envelope{Cmd: ch.Chunk, Sig: ch.Sig})
	if _, err := Open(asCmd, keys); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a chunk opened as a command: %v", err)
	}
}

func TestChunkLimits(t *testing.T) {
	key := seedKey(2)
	for name, mut := range map[string]func(*LiveChunk){
		"too many packets": func(c *LiveChunk) { c.Packets = append(c.Packets, []byte{1}) },
		"packet too big":   func(c *LiveChunk) { c.Packets[0] = make([]byte, MaxPacketBytes+1) },
		"empty packet":     func(c *LiveChunk) { c.Packets[1] = nil },
		"empty chunk":      func(c *LiveChunk) { c.Packets = nil },
		"seq zero":         func(c *LiveChunk) { c.Seq = 0 },
		"no session":       func(c *LiveChunk) { c.Session = "" },
		"no captured":      func(c *LiveChunk) { c.Captured = time.Time{} },
	} {
		c := testChunk()
		mut(&c)
		if _, err := SignChunk(c, key); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: SignChunk accepted it (%v)", name, err)
		}
	}
	// The largest valid chunk fits in an envelope.
	big := testChunk()
	for i := range big.Packets {
		big.Packets[i] = bytes.Repeat([]byte{0xff}, MaxPacketBytes)
	}
	raw, err := SignChunk(big, key)
	if err != nil {
		t.Fatalf("largest chunk: %v", err)
	}
	if _, err := OpenChunk(raw, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}); err != nil {
		t.Fatalf("largest chunk does not open: %v", err)
	}
	if _, err := OpenChunk(bytes.Repeat([]byte{' '}, MaxChunkEnvelope+1), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversize envelope: %v", err)
	}
}

func TestLiveCommandContent(t *testing.T) {
	key := seedKey(2)
	c := liveCommand()
	c.Text = "cũng có chữ"
	if _, err := Sign(c, key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("live and text together: %v", err)
	}
	c = liveCommand()
	c.Live.Session = "a/b"
	if _, err := Sign(c, key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("session with a slash: %v", err)
	}
	c = liveCommand()
	c.Live = nil
	if _, err := Sign(c, key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no content: %v", err)
	}
}

func TestLiveTopics(t *testing.T) {
	tp := Topics{"hanoi", "xa-1", "thon-3"}
	if got := tp.Live("s1"); got != "loalang/v1/hanoi/xa-1/live/s1" {
		t.Fatalf("Live: %s", got)
	}
	if got := tp.LiveFilter(); got != "loalang/v1/hanoi/xa-1/live/+" {
		t.Fatalf("LiveFilter: %s", got)
	}
	if got := tp.LiveSession("loalang/v1/hanoi/xa-1/live/s1"); got != "s1" {
		t.Fatalf("LiveSession: %q", got)
	}
	for _, bad := range []string{"loalang/v1/hanoi/xa-2/live/s1", "loalang/v1/hanoi/xa-1/live/", "loalang/v1/hanoi/xa-1/live/a/b", "loalang/v1/hanoi/xa-1/cmd"} {
		if got := tp.LiveSession(bad); got != "" {
			t.Errorf("LiveSession(%q) = %q", bad, got)
		}
	}
}
