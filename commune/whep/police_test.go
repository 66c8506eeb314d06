package whep_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loalang/loalang/internal/natlab"
)

// TestNATHelperPolice is the police's browser, run by TestNATCameraPath in
// the police namespace: headless Chromium opens the commune's camera grid
// page, plays each camera of NATCAM_CAMERAS through the commune, waits for
// framesDecoded > 0, reads the selected ICE candidate pair (W3C
// webrtc-stats §6.5: it must be a TURN relay), DELETEs the session and
// prints one "POLICE RESULT {json}" line.
func TestNATHelperPolice(t *testing.T) {
	if os.Getenv(roleEnv) != "police" {
		t.Skip("run by TestNATCameraPath")
	}
	res := policeResult{}
	defer func() {
		raw, _ := json.Marshal(res)
		fmt.Println("POLICE RESULT " + string(raw))
	}()
	fail := func(format string, args ...any) {
		res.Error = fmt.Sprintf(format, args...)
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		fail("chromium: %v", err)
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE "+natlab.CommunePoliceIP),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(os.Getenv("NATCAM_URL"))); err != nil {
		fail("open the grid page: %v", err)
		return
	}
	token := strings.TrimPrefix(os.Getenv("NATCAM_URL")[strings.Index(os.Getenv("NATCAM_URL"), "#"):], "#token=")
	for _, cam := range strings.Split(os.Getenv("NATCAM_CAMERAS"), ",") {
		key := village + "/" + cam
		loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`window.loalang.play(%q, %q, null, null)`, village, cam), chromedp.EvalAwaitPromise))
		if err != nil {
			fail("play %s: %v", cam, err)
			return
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`window.loalang.framesDecoded(%q, %q)`, village, cam), chromedp.EvalAwaitPromise))
			if err != nil {
				fail("framesDecoded %s: %v", cam, err)
				return
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				fail("%s: no frame decoded within 60 s", cam)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // let the page's 20 ms poll stamp the first frame
		c, err := chromedp.Run(ctx, chromedp.Evaluate[policeCamera](fmt.Sprintf(`(async (k) => {
  const s = window.loalang.sessions.get(k), tm = window.loalang.timing[k];
  const st = await s.pc.getStats();
  let pair = null, frames = 0;
  st.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) pair = st.get(r.selectedCandidatePairId); });
  st.forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0; });
  const out = { camera: k, frames_decoded: frames, gathered_ms: tm.gathered - tm.start, answer_ms: tm.answered - tm.start, first_frame_ms: (tm.decoded || 0) - tm.start };
  if (pair) {
    out.local_type = st.get(pair.localCandidateId).candidateType;
    out.remote_type = st.get(pair.remoteCandidateId).candidateType;
    out.rtt_ms = (pair.currentRoundTripTime || 0) * 1000;
  }
  return out;
})(%q)`, key), chromedp.EvalAwaitPromise))
		if err != nil {
			fail("stats %s: %v", cam, err)
			return
		}
		status, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`fetch(%q, {method: "DELETE", headers: {"Authorization": "Bearer " + %q}}).then((r) => r.status)`, loc, token), chromedp.EvalAwaitPromise))
		if err != nil {
			fail("delete %s: %v", cam, err)
			return
		}
		c.Deleted = status == 204
		res.Cameras = append(res.Cameras, c)
	}
}
