package wire

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func intp(v int) *int { return &v }

// golden compares got with testdata/golden/name, rewriting it when
// UPDATE_GOLDEN=1.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with UPDATE_GOLDEN=1 to create): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: wire format changed\ngot  %q\nwant %q", name, got, want)
	}
}

func goldenJSON[T interface{ Validate() error }](t *testing.T, name string, v T) {
	t.Helper()
	b, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, name, b)
	back, err := Decode[T](b)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	if !reflect.DeepEqual(back, v) {
		t.Fatalf("%s round trip: got %+v want %+v", name, back, v)
	}
}

func TestGoldenPayloads(t *testing.T) {
	goldenJSON(t, "status-online.json", Status{State: StateOnline, Kind: KindSpeaker, Firmware: "sim-1.0.0", TS: 1764300000000})
	goldenJSON(t, "status-will.json", Status{State: StateOffline, Kind: KindSpeaker})
	goldenJSON(t, "heartbeat.json", Heartbeat{Firmware: "sim-1.0.0", Volume: 80, UptimeS: 3600, SignalDBm: -67, TS: 1764300000000})
	goldenJSON(t, "cmd-set-volume.json", Command{ID: "c-1", Op: OpSetVolume, Expires: 1764300005000, Volume: intp(60)})
	goldenJSON(t, "cmd-ping.json", Command{ID: "c-2", Op: OpPing, Expires: 1764300005000})
	goldenJSON(t, "reply-ok.json", Reply{ID: "c-1", OK: true, Volume: intp(60), TS: 1764300000100})
	goldenJSON(t, "reply-error.json", Reply{ID: "c-3", Error: "expired"})
	goldenJSON(t, "stream-start.json", StreamControl{Op: StreamStart, StreamID: 0xA1B2C3D4, Codec: CodecOpus, Priority: PriorityNormal, Volume: 80, StartAt: 1764300000000000, PlayoutDelayMS: 500, Packets: 150})
	goldenJSON(t, "stream-stop.json", StreamControl{Op: StreamStop, StreamID: 0xA1B2C3D4, Reason: "done"})
	goldenJSON(t, "clock-request.json", ClockRequest{Seq: 7, T1: 1764300000000000})
	goldenJSON(t, "clock-response.json", ClockResponse{Seq: 7, T1: 1764300000000000, T2: 1764300000000250, T3: 1764300000000300})
	goldenJSON(t, "report.json", Report{StreamID: 0xA1B2C3D4, Expected: 150, Played: 147, Late: 1, Lost: 2, ClockErrorUS: 180, Final: true})
}

func TestGoldenFrame(t *testing.T) {
	f := Frame{Flags: FlagLast, StreamID: 0xA1B2C3D4, Seq: 3, PlayAt: 1764300000060000, DelayMS: 500,
		Packets: [][]byte{{0xF8, 0xFF, 0xFE}, {0xF8, 0x01}, {0xF8}}}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "frame-3-packets.bin", b)
	var back Frame
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, f) {
		t.Fatalf("round trip: got %+v want %+v", back, f)
	}
}

func TestFrameRejects(t *testing.T) {
	good, _ := Frame{StreamID: 1, Packets: [][]byte{{1, 2}}}.MarshalBinary()
	cases := map[string][]byte{
		"empty":     nil,
		"short":     good[:10],
		"magic":     append([]byte{0, 0}, good[2:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 0),
	}
	for name, b := range cases {
		var f Frame
		if err := f.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	if _, err := (Frame{StreamID: 1}).MarshalBinary(); err == nil {
		t.Error("frame without packets encoded")
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, in := range map[string]string{
		"garbage":     "\x00\xff",
		"bad state":   `{"state":"maybe","kind":"speaker"}`,
		"no kind":     `{"state":"online"}`,
		"wrong types": `{"state":1}`,
	} {
		if _, err := Decode[Status]([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	if _, err := Decode[Command]([]byte(`{"id":"x","op":"set_volume","expires":5,"volume":101}`)); err == nil {
		t.Error("volume 101 accepted")
	}
}

func TestTopics(t *testing.T) {
	tp := MustTopics("demo")
	if got := tp.Device("spk-01", SufStatus); got != "loalang/v1/demo/dev/spk-01/status" {
		t.Fatalf("device topic %q", got)
	}
	id, suf, ok := tp.ParseDevice("loalang/v1/demo/dev/spk-01/reply")
	if !ok || id != "spk-01" || suf != SufReply {
		t.Fatalf("parse: %q %q %v", id, suf, ok)
	}
	for _, bad := range []string{"loalang/v1/other/dev/a/status", "loalang/v1/demo/dev/a", "loalang/v1/demo/dev/a+b/status", "loalang/v1/demo/dev/a/b/c"} {
		if _, _, ok := tp.ParseDevice(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
	z, k, ok := tp.ParseZone(tp.ZoneAudio("market"))
	if !ok || z != "market" || k != "audio" {
		t.Fatalf("zone parse %q %q %v", z, k, ok)
	}
	if _, err := NewTopics("a/b"); err == nil {
		t.Fatal("site with slash accepted")
	}
	if got := tp.Zone("market", ZoneKindStream); got != "loalang/v1/demo/zone/market/stream" || got != tp.ZoneStream("market") {
		t.Errorf("zone topic %q", got)
	}
	if got := tp.All(); got != "loalang/v1/demo/#" {
		t.Errorf("site filter %q", got)
	}
	if got := SitePrefix("demo"); got != tp.Prefix() {
		t.Errorf("SitePrefix %q, Prefix %q", got, tp.Prefix())
	}
}

func TestPublishSize(t *testing.T) {
	// 0x30, remaining length 2+5+3 = 10 in one byte, then the 10 bytes.
	if got := PublishSize("a/b/c", 0, 3); got != 12 {
		t.Fatalf("QoS 0: %d, want 12", got)
	}
	// A packet identifier at QoS 1; 200 bytes of payload need a 2-byte varint.
	if got := PublishSize("a/b/c", 1, 200); got != 1+2+2+5+2+200 {
		t.Fatalf("QoS 1: %d", got)
	}
}
