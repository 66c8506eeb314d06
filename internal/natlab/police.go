package natlab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// PoliceCamera is one viewing session as the police browser saw it. Times
// are from the tile's start (ICE servers fetched, offer made): Gathered
// when the offer went out, Answer when the commune's 201 arrived, ICE
// when the ICE connection was up, Connected when DTLS was too (RFC 8829
// §4.1.12's connected state), FirstFrame when framesDecoded first exceeded
// 0 (polled every 20 ms).
type PoliceCamera struct {
	Viewer        int     `json:"viewer"`
	Camera        string  `json:"camera"`
	FramesDecoded int     `json:"frames_decoded"`
	GatheredMS    float64 `json:"gathered_ms"`
	AnswerMS      float64 `json:"answer_ms"`
	ICEMS         float64 `json:"ice_ms"`
	ConnectedMS   float64 `json:"connected_ms"`
	FirstFrameMS  float64 `json:"first_frame_ms"`
	LocalType     string  `json:"local_type"`
	RemoteType    string  `json:"remote_type"`
	RTTMS         float64 `json:"rtt_ms"`
	// RemoteHosts counts the village's host candidates the browser was
	// given (a commune session offers relay candidates only).
	RemoteHosts int  `json:"remote_hosts"`
	Deleted     bool `json:"deleted"`
}

// PoliceResult is what a police run prints after ResultPrefix.
type PoliceResult struct {
	Cameras []PoliceCamera `json:"cameras"`
	Error   string         `json:"error,omitempty"`
}

// ResultPrefix starts the police process's result line.
const ResultPrefix = "POLICE RESULT "

// PrintPolice runs RunPolice and prints its result line: for a process
// re-executed in the police namespace.
func PrintPolice(ctx context.Context, pageURL, token string, viewers int, cameras []string, hangup bool, shot string) {
	res, err := RunPolice(ctx, pageURL, token, viewers, cameras, hangup, shot)
	out := PoliceResult{Cameras: res}
	if err != nil {
		out.Error = err.Error()
	}
	raw, _ := json.Marshal(out)
	fmt.Println(ResultPrefix + string(raw))
}

// RunPolice drives headless Chromium (in the caller's network namespace):
// for each viewer in turn a tab opens the grid page (pageURL, with
// ?autoplay=0) and plays every camera of the village at once, waits until
// each has decoded a frame, reads the selected ICE candidate pair (W3C
// webrtc-stats §6.5) and, with hangup, DELETEs each session. Viewer 1's
// sessions start the cameras (cold); later viewers find them running. With
// shot set, a last tab at 390×844 opens the grid as a user would (every
// permitted camera playing by itself) and saves a PNG screenshot there once
// the village's shared cameras play.
func RunPolice(ctx context.Context, pageURL, token string, viewers int, cameras []string, hangup bool, shot string) ([]PoliceCamera, error) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "natlab-chromium-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(dir),
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
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE "+CommunePoliceIP),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil {
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	var out []PoliceCamera
	camsJS, _ := json.Marshal(cameras)
	for v := 1; v <= viewers; v++ {
		tctx, cancelTab := chromedp.NewContext(bctx)
		defer cancelTab()
		if err := chromedp.Do(tctx, chromedp.Navigate(pageURL)); err != nil {
			return out, fmt.Errorf("viewer %d: open the grid page: %w", v, err)
		}
		locs, err := chromedp.Run(tctx, chromedp.Evaluate[[]string](fmt.Sprintf(
			`Promise.all(%s.map((c) => window.loalang.play(%q, c, null, null)))`, camsJS, VillageID), chromedp.EvalAwaitPromise))
		if err != nil {
			return out, fmt.Errorf("viewer %d: play: %w", v, err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			n, err := chromedp.Run(tctx, chromedp.Evaluate[int](fmt.Sprintf(
				`Promise.all(%s.map((c) => window.loalang.framesDecoded(%q, c))).then((a) => a.filter((n) => n > 0).length)`, camsJS, VillageID),
				chromedp.EvalAwaitPromise))
			if err != nil {
				return out, fmt.Errorf("viewer %d: framesDecoded: %w", v, err)
			}
			if n == len(cameras) {
				break
			}
			if time.Now().After(deadline) {
				return out, fmt.Errorf("viewer %d: %d of %d cameras decoded a frame within 60 s", v, n, len(cameras))
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // the page's 20 ms poll stamps the first frame
		for i, cam := range cameras {
			c, err := chromedp.Run(tctx, chromedp.Evaluate[PoliceCamera](fmt.Sprintf(`(async (k) => {
  const s = window.loalang.sessions.get(k), tm = window.loalang.timing[k];
  const st = await s.pc.getStats();
  let pair = null, frames = 0;
  st.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) pair = st.get(r.selectedCandidatePairId); });
  st.forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0; });
  let hosts = 0;
  st.forEach((r) => { if (r.type === "remote-candidate" && r.candidateType === "host") hosts++; });
  const out = { camera: k, frames_decoded: frames, gathered_ms: tm.gathered - tm.start, answer_ms: tm.answered - tm.start,
    ice_ms: (tm.ice || 0) - tm.start, connected_ms: (tm.connected || 0) - tm.start, first_frame_ms: (tm.decoded || 0) - tm.start,
    remote_hosts: hosts };
  if (pair) {
    out.local_type = st.get(pair.localCandidateId).candidateType;
    out.remote_type = st.get(pair.remoteCandidateId).candidateType;
    out.rtt_ms = (pair.currentRoundTripTime || 0) * 1000;
  }
  return out;
})(%q)`, VillageID+"/"+cam), chromedp.EvalAwaitPromise))
			if err != nil {
				return out, fmt.Errorf("viewer %d: stats %s: %w", v, cam, err)
			}
			c.Viewer = v
			if hangup && i < len(locs) {
				status, err := chromedp.Run(tctx, chromedp.Evaluate[int](fmt.Sprintf(
					`fetch(%q, {method: "DELETE", headers: {"Authorization": "Bearer " + %q}}).then((r) => r.status)`, locs[i], token), chromedp.EvalAwaitPromise))
				if err != nil {
					return out, fmt.Errorf("viewer %d: delete %s: %w", v, cam, err)
				}
				c.Deleted = status == 204
			}
			out = append(out, c)
		}
	}
	if shot != "" {
		tctx, cancelTab := chromedp.NewContext(bctx)
		defer cancelTab()
		if err := chromedp.Do(tctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(strings.Replace(pageURL, "autoplay=0", "autoplay=1", 1))); err != nil {
			return out, fmt.Errorf("screenshot: open the grid page: %w", err)
		}
		deadline := time.Now().Add(45 * time.Second)
		for time.Now().Before(deadline) {
			n, err := chromedp.Run(tctx, chromedp.Evaluate[int](`[...document.querySelectorAll(".cam")].filter((t) => t.querySelector(".msg").textContent === "").length`))
			if err == nil && n >= len(cameras) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Second) // a few more frames painted
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			return out, fmt.Errorf("screenshot: %w", err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			return out, fmt.Errorf("screenshot: %w", err)
		}
	}
	return out, nil
}

// PoliceURL is the grid page's URL for a police run.
func PoliceURL(base, token string) string {
	return base + "/commune/cameras?autoplay=0#token=" + token
}

// ParsePoliceResult finds and decodes a police process's result line.
func ParsePoliceResult(p *Proc) (PoliceResult, bool, error) {
	rest, ok := p.Find(ResultPrefix)
	if !ok {
		return PoliceResult{}, false, nil
	}
	var r PoliceResult
	err := json.Unmarshal([]byte(strings.TrimSpace(rest)), &r)
	return r, true, err
}
