package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"

	bmedia "github.com/loalang/loalang/broadcast/media"
	communesrv "github.com/loalang/loalang/commune"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/internal/whipphone"
)

// postLive sends a WHIP offer to the commune as c's user.
func postLive(t *testing.T, c *client, query, contentType, offer string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", c.base+"/api/v1/commune/live"+query, strings.NewReader(offer))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// TestCommuneLiveSpeechEndToEnd: an approver's browser (a pion peer)
// speaks a 660 Hz tone, real Opus from libopus, to the commune's WHIP
// endpoint; the commune signs a live command for thon-1 and thon-2 and
// publishes the packets as signed chunks on its Mosquitto; every
// simulated speaker of both villages decodes and plays the tone; the
// approver's DELETE ends it; the commune's live record shows each
// speaker's delivery from both villages. Bad targets and SDP are 400, an
// editor's offer 403.
func TestCommuneLiveSpeechEndToEnd(t *testing.T) {
	broker := startUpstreamMosquitto(t)
	office := startCommuneOffice(t, broker, []string{"thon-1", "thon-2"})
	recs := map[string]string{}
	for _, site := range []string{"thon-1", "thon-2"} {
		cfg := communeVillage(t, site, broker, office.pub, 2) // spk-01 in zone a, spk-02 in b
		startDaemon(t, cfg)
		recs[site] = t.TempDir()
		startSpeakers(t, cfg.DataDir, func(c *speaker.Config) { c.RecordDir = recs[site] })
	}
	eventually(t, 60*time.Second, "both villages' speakers online at the commune", func() bool {
		m := office.villages(t)
		return m["thon-1"].Online == 2 && m["thon-2"].Online == 2 && m["thon-1"].Presence == "online" && m["thon-2"].Presence == "online"
	})

	offer := whipphone.New(t, nil).Offer
	for _, bad := range []struct {
		who         *client
		query, ct   string
		offer       string
		code        int
		errContains string
	}{
		{office.ed, "?villages=thon-1", "application/sdp", offer, 403, "role"},
		{office.appr, "?villages=thon-1", "application/json", offer, 415, "application/sdp"},
		{office.appr, "", "application/sdp", offer, 400, "villages"},
		{office.appr, "?villages=thon-1,thon-9", "application/sdp", offer, 400, "thon-9"},
		{office.appr, "?villages=thon-1&urgency=loud", "application/sdp", offer, 400, "urgency"},
		{office.appr, "?villages=thon-1&zones=a/b", "application/sdp", offer, 400, "zones"},
		{office.appr, "?villages=thon-1", "application/sdp", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", 400, "Opus"},
	} {
		if code, _, body := postLive(t, bad.who, bad.query, bad.ct, bad.offer); code != bad.code || !strings.Contains(body, bad.errContains) {
			t.Errorf("POST live%s (%s): %d %s, want %d with %q", bad.query, bad.ct, code, body, bad.code, bad.errContains)
		}
	}
	if code, body := office.appr.do("GET", "/api/v1/commune/drafts", nil); code != 200 || strings.Contains(string(body), `"kind":"live"`) {
		t.Fatalf("a refused offer left a live record: %d %s", code, body)
	}

	// The tone, 20 ms Opus packets from the project's libopus encoder.
	const toneHz = 660
	packets, err := bmedia.EncodePCM(context.Background(), audiotest.Tone(toneHz, 0.5, 48000, 1000), 0)
	if err != nil {
		t.Fatal(err)
	}
	browser := whipphone.New(t, nil)
	posted := time.Now()
	code, hdr, answer := postLive(t, office.appr, "?villages=thon-1,thon-2&urgency=routine&title=Th%E1%BB%AD", "application/sdp", browser.Offer)
	if code != 201 || hdr.Get("Content-Type") != "application/sdp" || !strings.HasPrefix(hdr.Get("Location"), "/api/v1/commune/live/") {
		t.Fatalf("POST live: %d %v %s", code, hdr, answer)
	}
	id := strings.TrimPrefix(hdr.Get("Location"), "/api/v1/commune/live/")
	browser.Connect(t, answer, 30*time.Second)
	if v := office.draft(t, id); v.Kind != communesrv.KindLive || v.Status != communesrv.StatusLive || v.CreatedBy != "duyet" || len(v.Deliveries) != 2 {
		t.Fatalf("live record on air: %+v", v)
	}

	// Speak (the tone, looped) until both villages started their live
	// broadcast, then three seconds more.
	stop := make(chan struct{})
	spoke := make(chan time.Time, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if i == 0 {
				spoke <- time.Now()
			}
			if browser.Track.WriteSample(media.Sample{Data: packets[i%len(packets)], Duration: 20 * time.Millisecond}) != nil {
				return
			}
		}
	}()
	firstSent := <-spoke
	eventually(t, 30*time.Second, "both villages started the live broadcast", func() bool {
		return office.draft(t, id).Summary.Started == 2
	})
	time.Sleep(3 * time.Second) // three seconds of speech, not a wait for readiness
	close(stop)

	if code, _ := office.ed.do("DELETE", "/api/v1/commune/live/"+id, nil); code != 403 {
		t.Fatalf("an editor's DELETE: %d, want 403", code)
	}
	if code, body := office.appr.do("DELETE", "/api/v1/commune/live/"+id, nil); code != 200 {
		t.Fatalf("DELETE live: %d %s", code, body)
	}
	if code, _ := office.appr.do("DELETE", "/api/v1/commune/live/"+id, nil); code != 404 {
		t.Fatalf("second DELETE: %d, want 404", code)
	}
	eventually(t, 60*time.Second, "every speaker's delivery of both villages on the live record", func() bool {
		v := office.draft(t, id)
		return v.Status == communesrv.StatusEnded && v.Summary.Played == 2 && v.Summary.Speakers == 4
	})
	v := office.draft(t, id)
	t.Logf("live record: status %s, reason %q, summary %+v", v.Status, v.Reason, v.Summary)
	if v.Summary.SpeakersPlayed != 4 || v.Summary.FramesPlayed < 100 || v.Reason != "hangup" || v.Ended.IsZero() {
		t.Fatalf("live record after the end: %+v", v)
	}
	for _, d := range v.Deliveries {
		if d.Accepted.IsZero() || d.Refused != "" || d.State == "" {
			t.Errorf("%s: %+v", d.Site, d)
		}
	}

	// Every speaker of both villages played the tone.
	for site, dir := range recs {
		for _, dev := range []string{"spk-01", "spk-02"} {
			wavs, _ := filepath.Glob(filepath.Join(dir, dev+"-*.wav"))
			if len(wavs) != 1 {
				t.Fatalf("%s %s: %d recordings, want 1", site, dev, len(wavs))
			}
			raw, err := os.ReadFile(wavs[0])
			if err != nil {
				t.Fatal(err)
			}
			pcm, rate, _, err := audiotest.ParseWAV(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(pcm) < rate {
				t.Fatalf("%s %s: %d samples, less than a second", site, dev, len(pcm))
			}
			mid := pcm[rate/5 : len(pcm)-rate/5]
			tone, other := audiotest.Goertzel(mid, rate, toneHz), audiotest.Goertzel(mid, rate, 2500)
			if tone < 0.1 || other > tone/10 {
				t.Errorf("%s %s: %d Hz amplitude %.3f, 2500 Hz %.3f: not the tone", site, dev, toneHz, tone, other)
			}
			var meta struct {
				FirstSample int64 `json:"first_sample_unix_ns"`
			}
			if raw, err := os.ReadFile(strings.TrimSuffix(wavs[0], ".wav") + ".json"); err == nil && json.Unmarshal(raw, &meta) == nil {
				t.Logf("%s %s: %d Hz amplitude %.3f; first sample played %v after the first packet was sent (%v after the POST; includes the command's delivery, chunks before it are dropped)",
					site, dev, toneHz, tone, time.Unix(0, meta.FirstSample).Sub(firstSent).Round(time.Millisecond), time.Unix(0, meta.FirstSample).Sub(posted).Round(time.Millisecond))
			}
		}
	}

	_, body := office.admin.do("GET", "/api/v1/commune/audit", nil)
	var entries []communesrv.AuditEntry
	json.Unmarshal(body, &entries)
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Target == id {
			seen[e.Action+" "+e.Actor] = true
		}
	}
	if !seen["live.start duyet"] || !seen["live.end duyet"] || !seen["live.hangup duyet"] {
		t.Errorf("audit of %s: %v", id, seen)
	}
}
