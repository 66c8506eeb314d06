package camera

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/whepview"

	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/prometheus/client_golang/prometheus"
)

func TestOfferH264DecodableFromFirstFrame(t *testing.T) {
	requireFFprobe(t)
	_, url := startSim(t, camsim.Options{})
	r := newRelay(t, testConfig(), Camera{ID: "cam1", Name: "Cổng làng", URL: url})

	c, sess, start := watch(t, r, "cam1", whepview.BrowserH264)
	if sess.Codec != codecH264 || sess.Substream {
		t.Fatalf("session %+v: want H264 main stream", sess)
	}
	aus := c.WaitAUs(1, 10*time.Second)
	t.Logf("offer to first access unit at the viewer: %v", aus[0].At.Sub(start).Round(time.Millisecond))
	whepview.AssertKeyframeFirst(t, aus[0].AnnexB)
	aus = c.WaitAUs(30, 10*time.Second)
	if n := decodeFrames(t, aus); n < 25 {
		t.Fatalf("ffprobe decoded %d frames of %d access units", n, len(aus))
	}

	// A second viewer joins a live camera: the GOP cache gives it a
	// keyframe with parameter sets at once, not at the next IDR.
	c2, sess2, start2 := watch(t, r, "cam1", whepview.BrowserH264)
	aus2 := c2.WaitAUs(1, 10*time.Second)
	t.Logf("offer to first access unit at a viewer joining a live camera (GOP cache): %v", aus2[0].At.Sub(start2).Round(time.Millisecond))
	whepview.AssertKeyframeFirst(t, aus2[0].AnnexB)
	if n := decodeFrames(t, c2.WaitAUs(20, 10*time.Second)); n < 15 {
		t.Fatalf("second viewer: ffprobe decoded %d frames", n)
	}
	if err := r.Hangup(sess2.ID); err != nil {
		t.Fatal(err)
	}

	st := r.List()
	if len(st) != 1 || st[0].State != StateLive || st[0].Codec != codecH264 || st[0].Width != 640 ||
		st[0].Height != 360 || st[0].Viewers != 1 {
		t.Fatalf("status %+v", st)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "loalang_camera_viewers" {
			found = mf.GetMetric()[0].GetGauge().GetValue() == 1
		}
	}
	if !found {
		t.Fatal("loalang_camera_viewers is not 1")
	}

	if err := r.Hangup(sess.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Hangup(sess.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second hangup: %v, want ErrNotFound", err)
	}
}

func TestParamsOnlyInSDPInsertedInBand(t *testing.T) {
	requireFFprobe(t)
	_, url := startSim(t, camsim.Options{ParamsOnlyInSDP: true})
	r := newRelay(t, testConfig(), Camera{ID: "cam1", URL: url})
	c, _, _ := watch(t, r, "cam1", whepview.BrowserH264)
	aus := c.WaitAUs(35, 10*time.Second)
	whepview.AssertKeyframeFirst(t, aus[0].AnnexB)
	keys := 0
	for _, au := range aus {
		if whepview.HasIDR(au.AnnexB) {
			keys++
			whepview.AssertKeyframeFirst(t, au.AnnexB)
		}
	}
	if keys < 2 {
		t.Fatalf("saw %d keyframes, want >= 2", keys)
	}
	if n := decodeFrames(t, aus); n < 30 {
		t.Fatalf("ffprobe decoded %d frames", n)
	}
	if st := r.List()[0]; st.ParamsInserted == 0 {
		t.Fatalf("status %+v: ParamsInserted = 0", st)
	}
}

func TestViewerSurvivesCameraRestart(t *testing.T) {
	requireFFprobe(t)
	sim, url := startSim(t, camsim.Options{})
	r := newRelay(t, testConfig(), Camera{ID: "cam1", URL: url})
	c, _, _ := watch(t, r, "cam1", whepview.BrowserH264)
	before := len(c.WaitAUs(10, 10*time.Second))

	addr := sim.Addr()
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	// Wait until the relay noticed the camera is gone.
	deadline := time.Now().Add(10 * time.Second)
	for r.List()[0].State == StateLive {
		if time.Now().After(deadline) {
			t.Fatal("relay still live after camera stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := len(c.AUs())
	if _, err := sim.Start(addr); err != nil {
		t.Fatalf("restart camera on %s: %v", addr, err)
	}
	restarted := time.Now()
	aus := c.WaitAUs(stopped+15, 5*time.Second+time.Second) // 15 frames = 1 s
	var resumed time.Time
	for _, au := range aus[stopped:] {
		resumed = au.At
		break
	}
	t.Logf("frames resumed %v after the camera restarted (%d before the stop)", resumed.Sub(restarted).Round(time.Millisecond), before)
	if resumed.Sub(restarted) > 5*time.Second {
		t.Fatalf("frames resumed after %v, want < 5s", resumed.Sub(restarted))
	}
	whepview.AssertKeyframeFirst(t, aus[stopped].AnnexB)
	// Same track, continuous RTP: no sequence gap, timestamps move forward.
	if gaps := c.SeqGaps(); gaps != 0 {
		t.Fatalf("%d RTP sequence gaps across the camera restart", gaps)
	}
	if d := int32(aus[stopped].TS - aus[stopped-1].TS); d <= 0 {
		t.Fatalf("RTP timestamp went back by %d across the restart", -d)
	}
	if n := decodeFrames(t, aus); n < len(aus)-2 {
		t.Fatalf("ffprobe decoded %d of %d access units across the restart", n, len(aus))
	}
	if st := r.List()[0]; st.Reconnects == 0 {
		t.Fatalf("status %+v: no reconnect counted", st)
	}
}

func TestH265CodecChoice(t *testing.T) {
	_, url265 := startSim(t, camsim.Options{Codec: camsim.H265})
	_, url264 := startSim(t, camsim.Options{})
	r := newRelay(t, testConfig(),
		Camera{ID: "cam2", URL: url265},
		Camera{ID: "cam3", URL: url265, SubstreamURL: url264})

	// H.264-only browser, no substream: refused with a message naming H.265.
	c := whepview.New(t, whepview.BrowserH264)
	_, err := r.Offer(context.Background(), "cam2", c.Offer, "police-1")
	if !errors.Is(err, ErrCodecUnsupported) || !strings.Contains(err.Error(), "H.265") ||
		!strings.Contains(err.Error(), "substream") {
		t.Fatalf("offer H.264 to H.265 camera: %v, want ErrCodecUnsupported naming H.265", err)
	}

	// H.264-only browser, substream configured: served the substream.
	c2, sess, _ := watch(t, r, "cam3", whepview.BrowserH264)
	if !sess.Substream || sess.Codec != codecH264 {
		t.Fatalf("session %+v: want the H.264 substream", sess)
	}
	whepview.AssertKeyframeFirst(t, c2.WaitAUs(3, 10*time.Second)[0].AnnexB)
	if st := r.List()[1]; st.Substream == nil || st.Substream.Viewers != 1 {
		t.Fatalf("cam3 status %+v: want 1 substream viewer", st)
	}

	// H.265-capable browser: the main stream passes through.
	c3, sess3, _ := watch(t, r, "cam2", append(append([]whepview.Codec{}, whepview.BrowserH265...), whepview.BrowserH264...))
	if sess3.Codec != codecH265 || sess3.Substream {
		t.Fatalf("session %+v: want H.265 pass-through", sess3)
	}
	aus := c3.WaitAUs(3, 10*time.Second)
	// H.265 NAL type of the first NAL unit after the start code: VPS (32).
	if len(aus[0].AnnexB) < 5 || (aus[0].AnnexB[4]>>1)&0x3f != 32 {
		t.Fatalf("first H.265 access unit does not start with a VPS: % x", aus[0].AnnexB[:min(8, len(aus[0].AnnexB))])
	}
	if !strings.EqualFold(c3.MIME(), "video/H265") {
		t.Fatalf("track codec %s", c3.MIME())
	}
}

func TestOfferErrorsAndLimits(t *testing.T) {
	_, url := startSim(t, camsim.Options{})
	cfg := testConfig()
	cfg.MaxViewersPerCamera = 1
	cfg.MaxViewers = 2
	r := newRelay(t, cfg, Camera{ID: "cam1", URL: url}, Camera{ID: "cam2", URL: url}, Camera{ID: "cam3", URL: url})
	ctx := context.Background()

	for _, bad := range []string{"", "not sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"} {
		if _, err := r.Offer(ctx, "cam1", bad, "x"); !errors.Is(err, ErrBadSDP) {
			t.Fatalf("offer %q: %v, want ErrBadSDP", bad, err)
		}
	}
	c := whepview.New(t, whepview.BrowserH264)
	if _, err := r.Offer(ctx, "nope", c.Offer, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown camera: %v, want ErrNotFound", err)
	}
	if err := r.Hangup("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}

	_, s1, _ := watch(t, r, "cam1", whepview.BrowserH264)
	if _, err := r.Offer(ctx, "cam1", whepview.New(t, whepview.BrowserH264).Offer, "x"); !errors.Is(err, ErrTooManyViewers) {
		t.Fatalf("second viewer of cam1: %v, want ErrTooManyViewers", err)
	}
	watch(t, r, "cam2", whepview.BrowserH264)
	if _, err := r.Offer(ctx, "cam3", whepview.New(t, whepview.BrowserH264).Offer, "x"); !errors.Is(err, ErrTooManyViewers) {
		t.Fatalf("third viewer overall: %v, want ErrTooManyViewers", err)
	}
	if err := r.Hangup(s1.ID); err != nil {
		t.Fatal(err)
	}
	watch(t, r, "cam1", whepview.BrowserH264)

	// A camera that is down answers ErrCameraDown within the handshake timeout.
	// Removing cameras hangs up their viewers.
	r.SetCameras([]Camera{{ID: "dead", URL: "rtsp://user:s3cret@127.0.0.1:1/stream"}})
	deadline := time.Now().Add(10 * time.Second)
	for len(r.Sessions("")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions %v survive their camera's removal", r.Sessions(""))
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := r.Offer(ctx, "dead", whepview.New(t, whepview.BrowserH264).Offer, "x")
	if !errors.Is(err, ErrCameraDown) {
		t.Fatalf("dead camera: %v, want ErrCameraDown", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
	for _, st := range r.List() {
		if strings.Contains(st.URL, "s3cret") || strings.Contains(st.Reason, "s3cret") {
			t.Fatalf("status leaks the password: %+v", st)
		}
	}
}

func TestBrowserStyleOfferAnswer(t *testing.T) {
	offer, err := os.ReadFile("testdata/chrome-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	_, url := startSim(t, camsim.Options{})
	cfg := testConfig()
	cfg.ICETCP = true
	r := newRelay(t, cfg, Camera{ID: "cam1", URL: url})
	sess, err := r.Offer(context.Background(), "cam1", string(offer), "chrome")
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	var rtpmaps []string
	for _, l := range strings.Split(sess.AnswerSDP, "\n") {
		if strings.HasPrefix(l, "a=rtpmap:") || strings.HasPrefix(l, "a=fmtp:") || strings.HasPrefix(l, "m=") {
			rtpmaps = append(rtpmaps, strings.TrimSpace(l))
		}
	}
	joined := strings.Join(rtpmaps, "\n")
	if !strings.Contains(joined, "H264/90000") || !strings.Contains(joined, "packetization-mode=1") ||
		!strings.Contains(sess.AnswerSDP, "a=candidate:") || !strings.Contains(sess.AnswerSDP, "a=sendonly") ||
		!strings.Contains(sess.AnswerSDP, "tcptype passive") {
		t.Fatalf("answer media lines:\n%s\nfull answer:\n%s", joined, sess.AnswerSDP)
	}
	if err := r.Hangup(sess.ID); err != nil {
		t.Fatal(err)
	}
}

func TestOnDemandLeavesNoGoroutines(t *testing.T) {
	_, url := startSim(t, camsim.Options{})
	var views []ViewRecord
	viewsCh := make(chan ViewRecord, 4)
	cfg := testConfig()
	cfg.OnView = func(v ViewRecord) { viewsCh <- v }
	r := newRelay(t, cfg, Camera{ID: "cam1", URL: url})

	cycle := func() {
		c, sess, _ := watch(t, r, "cam1", whepview.BrowserH264)
		c.WaitAUs(3, 10*time.Second)
		if err := r.Hangup(sess.ID); err != nil {
			t.Fatal(err)
		}
		c.Close()
		views = append(views, <-viewsCh)
		waitState(t, r, "cam1", StateIdle)
	}
	cycle() // warm up pion's lazily started globals
	base := runtime.NumGoroutine()
	cycle()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(views) != 2 || views[1].Viewer != "police-1" || views[1].CameraID != "cam1" || !views[1].To.After(views[1].From) {
		t.Fatalf("audit records %+v", views)
	}
}

func waitState(t *testing.T, r *Relay, id string, want State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, st := range r.List() {
			if st.ID == id && st.State == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("camera %s never reached %s: %+v", id, want, r.List())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"rtsp://admin:pa55w0rd@10.0.0.5:554/h264":         "rtsp://***@10.0.0.5:554/h264",
		"rtsp://10.0.0.5/live?user=admin&password=secret": "rtsp://10.0.0.5/live?user=***&password=***", // order kept
		"rtsp://10.0.0.5/live":                            "rtsp://10.0.0.5/live",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := scrub("dial rtsp://admin:pa55w0rd@x failed", "rtsp://admin:pa55w0rd@x"); strings.Contains(got, "pa55w0rd") {
		t.Errorf("scrub left the password: %s", got)
	}
}

func TestQueueBoundedSkipsToKeyframe(t *testing.T) {
	q := newQueue(10, time.Second)
	now := time.Now()
	key := &frame{key: true}
	delta := &frame{}
	dropped := q.push(key, false, now)
	for i := 0; i < 9; i++ {
		dropped += q.push(delta, false, now)
	}
	if dropped != 0 {
		t.Fatalf("dropped %d frames below the bound", dropped)
	}
	// The viewer does not drain: the 11th frame overflows, the queue is
	// emptied and further delta frames are skipped until a keyframe.
	dropped = q.push(delta, false, now)
	dropped += q.push(delta, false, now)
	if got := q.take(nil); len(got) != 0 || dropped != 12 {
		t.Fatalf("after overflow: %d queued, %d dropped; want 0 queued, 12 dropped", len(got), dropped)
	}
	q.push(key, false, now)
	q.push(delta, false, now)
	if got := q.take(nil); len(got) != 2 || !got[0].f.key {
		t.Fatalf("after keyframe: %d queued, want 2 starting with the keyframe", len(got))
	}
	// Age bound: a frame older than the delay also flushes the queue.
	q.push(key, false, now)
	if d := q.push(delta, false, now.Add(2*time.Second)); d != 2 {
		t.Fatalf("age overflow dropped %d, want 2", d)
	}
}

// TestNACKRetransmitsFromHistory loses video datagrams on the viewer's
// network; the viewer's NACKs (RFC 4585 §6.2.1) must bring each lost packet
// back from the viewer's send history, with its original sequence number.
func TestNACKRetransmitsFromHistory(t *testing.T) {
	_, url := startSim(t, camsim.Options{})
	r := newRelay(t, testConfig(), Camera{ID: "cam1", URL: url})
	c := whepview.NewLossy(t, whepview.BrowserH264)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sess, err := r.Offer(ctx, "cam1", c.Offer, "police-1")
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	c.Accept(sess.AnswerSDP)
	c.WaitAUs(5, 10*time.Second)

	const losses = 3
	deadline := time.Now().Add(15 * time.Second)
	for lost := 0; c.Late() < losses; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d lost packets came back (relay retransmitted %d)", c.Late(), losses, r.retransmits.Load())
		}
		if lost == c.Late() {
			c.DropNextMedia()
			lost++
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := r.retransmits.Load(); n < losses {
		t.Fatalf("relay counted %d retransmissions, want at least %d", n, losses)
	}
}
