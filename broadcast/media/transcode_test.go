package media

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/audiotest"
)

// slowReader hands out data in small pieces, like a network stream.
type slowReader struct {
	data []byte
	step int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), s.step, len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}

func TestTranscoderJoinsMidStream(t *testing.T) {
	data := mp3Fixture(t, "0.4*sin(2*PI*1000*t)", 44100, 1, "128k", "-write_xing", "0")
	// Join 1000 bytes in: mid-frame, like tuning in to a live mount.
	tc, err := NewMP3Transcoder(&slowReader{data: data[1000:], step: 333}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	if err := tc.Run(context.Background(), func(p []byte) error {
		pkts = append(pkts, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// 2 s minus the skipped bytes and warm-up: roughly 1.9 s of packets.
	if len(pkts) < 85 || len(pkts) > 105 {
		t.Fatalf("%d packets", len(pkts))
	}
	pcm := decodePackets(t, pkts)
	checkTone(t, pcm, 0.4) // no loudness pass: source level
	// No burst of noise at the join.
	head := pcm[:4800]
	if g := audiotest.Goertzel(head, OpusRate, 3100); g > 0.01 {
		t.Errorf("noise at stream start: %.4f at 3.1 kHz", g)
	}
}

func TestTranscoderRejectsMPEG2(t *testing.T) {
	data := mp3Fixture(t, "0.4*sin(2*PI*1000*t)", 22050, 1, "32k")
	tc, err := NewMP3Transcoder(&slowReader{data: data, step: 512}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Next(context.Background()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported", err)
	}
	tc, _ = NewMP3Transcoder(&slowReader{data: []byte("<html>not a stream</html>"), step: 512}, 0)
	if _, err := tc.Next(context.Background()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("html: got %v, want ErrCorrupt", err)
	}
}

// TestTranscoderHTTPCancel relays an endless HTTP stream from a loopback
// server and stops when the request context is cancelled.
func TestTranscoderHTTPCancel(t *testing.T) {
	data := mp3Fixture(t, "0.4*sin(2*PI*1000*t)", 48000, 1, "64k", "-write_xing", "0")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/mpeg")
		for r.Context().Err() == nil {
			if _, err := w.Write(data); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tc, err := NewMP3Transcoder(resp.Body, 32000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = tc.Run(ctx, func(p []byte) error {
		if n++; n == 250 { // 5 s of audio
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v after cancel, want context.Canceled", err)
	}
}
