package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/audiotest"
)

// upload posts a file as multipart field "file".
func (c *client) upload(name string, data []byte) (int, []byte) {
	c.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", c.base+"/api/v1/media", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

type delivery struct {
	ID       string `json:"id"`
	Expected uint64 `json:"frames_expected"`
	Played   uint64 `json:"frames_played"`
	Late     uint64 `json:"frames_late"`
	Lost     uint64 `json:"frames_lost"`
}

type broadcastView struct {
	ID        string     `json:"id"`
	State     string     `json:"state"`
	Packets   int        `json:"packets"`
	StreamIDs []uint32   `json:"stream_ids"`
	Devices   []delivery `json:"devices"`
}

func (c *client) broadcast(id string) broadcastView {
	code, body := c.do("GET", "/api/v1/broadcasts/"+id, nil)
	if code != 200 {
		c.t.Fatalf("get broadcast: %d %s", code, body)
	}
	var b broadcastView
	json.Unmarshal(body, &b)
	return b
}

// TestToneBroadcastEndToEnd is issue 3's acceptance: a 1 kHz tone WAV is
// uploaded and broadcast to 2 of 3 zones; speakers with clock offsets and
// 2% loss play it, their recordings hold the tone, and the third zone
// hears nothing.
func TestToneBroadcastEndToEnd(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 9) // zones a, b, c: 3 speakers each
	d := startDaemon(t, cfg)
	rec := t.TempDir()
	i := 0
	speakers := startSpeakers(t, cfg.DataDir, func(c *speaker.Config) {
		i++
		c.RecordDir = rec
		c.KeepPlayed = 0
		c.Seed = int64(180 + i) // a fixed pattern that drops 1.8% of the lossy speakers' messages
		c.ClockOffset = []time.Duration{0, 1500 * time.Millisecond, -800 * time.Millisecond}[i%3]
		c.DriftPPM = []float64{0, 80, -60}[i%3]
		if i%2 == 0 {
			c.Loss = 0.02
		}
	})
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	eventually(t, 10*time.Second, "speakers ready", func() bool {
		for _, s := range speakers {
			if !s.Ready() {
				return false
			}
		}
		return true
	})

	tone := audiotest.Tone(1000, 0.5, 16000, 5000)
	code, body := c.upload("tone.wav", audiotest.WAV(tone, 16000, 1))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var info media.Info
	json.Unmarshal(body, &info)
	if info.DurationMS < 4900 || info.DurationMS > 5100 {
		t.Fatalf("duration %d ms", info.DurationMS)
	}
	code, body = c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": info.ID, "zones": []string{"a", "b"}, "priority": "normal", "volume": 100})
	if code != 201 {
		t.Fatalf("broadcast: %d %s", code, body)
	}
	var started broadcastView
	json.Unmarshal(body, &started)

	eventually(t, 20*time.Second, "broadcast done with final reports", func() bool {
		b := c.broadcast(started.ID)
		if b.State != "done" || len(b.Devices) != 6 {
			return false
		}
		for _, dv := range b.Devices {
			if dv.Expected != uint64(b.Packets) || dv.Played < dv.Expected*97/100 {
				return false
			}
		}
		return true
	})
	b := c.broadcast(started.ID)
	t.Logf("media: %d packets; broadcast: %d packets", info.Packets, b.Packets)
	lossy := 0
	for _, dv := range b.Devices {
		t.Logf("%s: expected %d played %d late %d lost %d", dv.ID, dv.Expected, dv.Played, dv.Late, dv.Lost)
		if dv.Lost > 0 {
			lossy++
		}
	}
	if lossy == 0 {
		t.Fatal("no speaker lost anything: the impairment is not in effect")
	}

	// The expected amplitude after loudness normalisation to the target.
	lufs, _ := media.IntegratedLoudness(audiotest.Tone(1000, 0.5, 48000, 3000))
	want := 0.5 * math.Pow(10, (cfg.Broadcast.LoudnessLUFS-lufs)/20)
	for _, dev := range cfg.Devices {
		wav := filepath.Join(rec, fmt.Sprintf("%s-%d.wav", dev.ID, b.StreamIDs[0]))
		raw, err := os.ReadFile(wav)
		if dev.Zones[0] == "c" {
			if err == nil {
				t.Errorf("%s outside the zones recorded the stream", dev.ID)
			}
			if _, ok := speakers[dev.ID].Stats(b.StreamIDs[0]); ok {
				t.Errorf("%s outside the zones received the stream", dev.ID)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: no recording: %v", dev.ID, err)
		}
		pcm, rate, _, err := audiotest.ParseWAV(raw)
		if err != nil {
			t.Fatal(err)
		}
		// Skip the codec's first and last 100 ms; judge the steady tone.
		mid := pcm[rate/10 : len(pcm)-rate/10]
		got := audiotest.Goertzel(mid, rate, 1000)
		if math.Abs(got-want)/want > 0.10 {
			t.Errorf("%s: 1 kHz amplitude %.3f, want %.3f ±10%%", dev.ID, got, want)
		}
		for _, f := range []float64{250, 3100, 5000} {
			if other := audiotest.Goertzel(mid, rate, f); other > want*0.05 {
				t.Errorf("%s: energy %.3f at unrelated %v Hz", dev.ID, other, f)
			}
		}
	}
}

// TestBadUploadsChangeNothing is issue 3's second acceptance item.
func TestBadUploadsChangeNothing(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1)
	cfg.Broadcast.MaxUploadBytes = 200 << 10
	d := startDaemon(t, cfg)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))

	good := audiotest.WAV(audiotest.Tone(1000, 0.5, 8000, 1000), 8000, 1)
	cases := map[string]struct {
		data []byte
		code int
	}{
		"empty.wav":     {nil, 422},
		"truncated.wav": {good[:len(good)/2], 422},
		"huge.wav":      {audiotest.WAV(audiotest.Tone(1000, 0.5, 48000, 3000), 48000, 1), 413},
		"notes.txt":     {[]byte("hello, this is not audio at all"), 415},
	}
	if ffmpeg, err := exec.LookPath("ffmpeg"); err == nil {
		mp3 := filepath.Join(t.TempDir(), "garbled.mp3")
		out, err := exec.Command(ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=22050:duration=2",
			"-ac", "1", "-ar", "22050", "-b:a", "32k", mp3).CombinedOutput()
		if err != nil {
			t.Fatalf("ffmpeg: %v %s", err, out)
		}
		raw, _ := os.ReadFile(mp3)
		cases["garbled.mp3"] = struct {
			data []byte
			code int
		}{raw, 415}
	} else {
		t.Log("ffmpeg missing: the MP3 case is skipped (make test installs it)")
	}
	for name, tc := range cases {
		code, body := c.upload(name, tc.data)
		if code != tc.code {
			t.Errorf("%s: %d %s, want %d", name, code, body, tc.code)
		}
		var e struct{ Error string }
		if json.Unmarshal(body, &e); e.Error == "" {
			t.Errorf("%s: no error message", name)
		}
		t.Logf("%s -> %d %s", name, code, e.Error)
	}
	code, body := c.do("GET", "/api/v1/media", nil)
	if code != 200 || string(bytes.TrimSpace(body)) != "[]" {
		t.Fatalf("media after bad uploads: %d %s", code, body)
	}
	entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, "media"))
	if len(entries) != 0 {
		t.Fatalf("media dir has %d files after bad uploads", len(entries))
	}
	// And a good one still works.
	if code, body := c.upload("ok.wav", good); code != 201 {
		t.Fatalf("good upload: %d %s", code, body)
	}
}
