package whep_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/commune/whep"
	"github.com/loalang/loalang/internal/natlab"
)

// roleEnv makes this test binary, re-executed in the police namespace,
// drive Chromium (TestNATHelperPolice).
const roleEnv = "LOALANG_NATCAM_ROLE"

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func goBuild(t *testing.T, out, pkg string) string {
	t.Helper()
	bin := filepath.Join(out, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin
}

// TestNATCameraPath: a village behind carrier NAT (nftables masquerade,
// nothing forwarded inbound) holds loalangd, simulated speakers and
// simulated cameras (built by the test); the commune namespace holds
// Mosquitto, coturn and loalangd role: commune with the camera path
// mounted; the police namespace holds headless Chromium (this test binary
// re-executed there). The commune cannot open a TCP connection to the
// village's web port, yet Chromium at the police decodes a village camera
// (framesDecoded > 0) over a TURN relay, signalled through the uplink
// broker. The commune answers a camera the police user may not see 403
// without asking, a camera the village does not share 403 from the
// village, an unknown village 504 after its timeout, no session 401; DELETE
// is forwarded and the village ends the session.
func TestNATCameraPath(t *testing.T) {
	if os.Getenv(roleEnv) != "" {
		t.Skip("helper process")
	}
	if why := natlab.Available(); why != "" {
		t.Skip("NAT topology unavailable: " + why)
	}
	for _, tool := range []string{"mosquitto", "turnserver", "chromium"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("NAT topology needs %s (make deps)", tool)
		}
	}
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755)
	var cams []string
	for i := 1; i <= 5; i++ {
		cams = append(cams, whep.CameraID(natlab.VillageID, fmt.Sprintf("cam-%d", i)))
	}
	cams = append(cams, whep.CameraID("thon-9", "cam-1"))
	s, err := natlab.StartStack(natlab.StackConfig{Dir: tmp, Loalangd: goBuild(t, tmp, "./cmd/loalangd"),
		FirmwareSim: goBuild(t, tmp, "./firmware-sim"), Cameras: 5, Shared: 4, Speakers: 3, Timeout: 4 * time.Second,
		PoliceCameras: cams, Log: t.Logf})
	if s != nil {
		t.Cleanup(func() {
			if t.Failed() {
				for _, p := range s.Procs() {
					t.Logf("--- %s output ---\n%s", p.Name, p.Tail(5000))
				}
			}
			if err := s.Close(); err != nil {
				t.Errorf("remove the topology: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}

	// Inbound is refused: the commune cannot reach the village's web port
	// (the attempt is routed to the NAT, which drops it), nor the NAT's
	// outside address; from the village's own side of the NAT it answers.
	commune := s.DialContext(s.Lab.Commune)
	for _, addr := range []string{natlab.VillageIP + ":" + natlab.VillageHTTPPort, natlab.NATOutsideIP + ":" + natlab.VillageHTTPPort} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := commune(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("the commune opened a TCP connection to the village at %s", addr)
		}
		t.Logf("commune -> %s refused as it must be: %v", addr, err)
	}
	inside, err := s.DialContext(s.Lab.NAT)(context.Background(), "tcp", natlab.VillageIP+":"+natlab.VillageHTTPPort)
	if err != nil {
		t.Fatalf("the village's web port is not listening (control from inside the NAT): %v", err)
	}
	inside.Close()

	// Refusals through the commune.
	offer := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	expect := func(token, path string, want int, wantText string) {
		t.Helper()
		resp, err := s.Do("POST", path, token, "application/sdp", strings.NewReader(offer))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(body), wantText) {
			t.Fatalf("POST %s: %d %s, want %d with %q", path, resp.StatusCode, body, want, wantText)
		}
		t.Logf("POST %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	v := "/api/v1/commune/villages/" + natlab.VillageID
	expect(s.PoliceToken, v+"/cameras/cam-9/whep", http.StatusForbidden, "Forbidden")
	expect(s.PoliceToken, v+"/cameras/cam-5/whep", http.StatusForbidden, "not shared with the commune")
	expect(s.PoliceToken, "/api/v1/commune/villages/thon-9/cameras/cam-1/whep", http.StatusGatewayTimeout, "did not answer")
	expect("", v+"/cameras/cam-1/whep", http.StatusUnauthorized, "sign in")

	// Chromium at the police plays cam-1 through TURN.
	pol := s.Command(s.Lab.Police, os.Args[0], "-test.run=^TestNATHelperPolice$", "-test.v", "-test.timeout=5m")
	pol.Env = append(os.Environ(), roleEnv+"=police", "NATCAM_URL="+natlab.PoliceURL(s.Base, s.PoliceToken),
		"NATCAM_TOKEN="+s.PoliceToken, "NATCAM_CAMERAS=cam-1", "NATCAM_SHOT="+filepath.Join(outputDir(t), "commune-cameras.png"))
	polProc, err := natlab.Start("police chromium", pol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		polProc.Stop()
		if t.Failed() {
			t.Logf("--- police output ---\n%s", polProc.Tail(5000))
		}
	})
	var got natlab.PoliceResult
	waitFor(t, 240*time.Second, "the police browser's result", func() bool {
		r, ok, err := natlab.ParsePoliceResult(polProc)
		if err != nil {
			t.Fatalf("police result: %v", err)
		}
		got = r
		return ok
	})
	t.Logf("police: %+v", got)
	for _, p := range []*natlab.Proc{s.Commune, s.Village} {
		for _, l := range p.Lines("took=") {
			t.Log(l)
		}
	}
	if got.Error != "" {
		t.Fatalf("police: %s", got.Error)
	}
	if len(got.Cameras) != 1 {
		t.Fatalf("police played %d cameras, want 1", len(got.Cameras))
	}
	for _, c := range got.Cameras {
		if c.FramesDecoded <= 0 {
			t.Fatalf("Chromium decoded no frame of %s", c.Camera)
		}
		if c.LocalType != "relay" {
			t.Fatalf("%s: the selected pair's local candidate is %q, want relay (through coturn)", c.Camera, c.LocalType)
		}
		if c.RemoteHosts != 0 {
			t.Fatalf("%s: the village offered %d host candidates, want relay candidates only", c.Camera, c.RemoteHosts)
		}
		if !c.Deleted {
			t.Fatalf("%s: DELETE was not answered 204", c.Camera)
		}
	}
	waitFor(t, 30*time.Second, "the village's hangup of the commune session", func() bool {
		return s.Commune.Has("camera hangup forwarded", "status=204")
	})
	waitFor(t, 30*time.Second, "the village's relay ending the viewer", func() bool {
		return s.Village.Has("commune:"+natlab.CommuneID+":"+natlab.PoliceUser) && s.Village.Has("hangup")
	})

	// The village goes offline: its uplink says so as it shuts down, and
	// the commune answers at once 503 with the time it dropped.
	s.FWSim.Stop()
	s.Village.Stop()
	waitFor(t, 30*time.Second, "the village offline at the commune", func() bool {
		resp, err := s.Do("GET", "/api/v1/commune/villages/presence", s.PoliceToken, "", nil)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ps []whep.Presence
		json.NewDecoder(resp.Body).Decode(&ps)
		return len(ps) == 1 && !ps[0].Online
	})
	expect(s.PoliceToken, v+"/cameras/cam-1/whep", http.StatusServiceUnavailable, "village thon-3 is offline")
}

// outputDir is where the grid's screenshot goes: $LOALANG_TEST_OUTPUT or
// <repo>/test-output (gitignored).
func outputDir(t *testing.T) string {
	dir := os.Getenv("LOALANG_TEST_OUTPUT")
	if dir == "" {
		dir, _ = filepath.Abs(filepath.Join("..", "..", "test-output"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestNATHelperPolice is the police's browser, run by TestNATCameraPath in
// the police namespace: it plays NATCAM_CAMERAS on the grid page and prints
// one natlab.ResultPrefix line.
func TestNATHelperPolice(t *testing.T) {
	if os.Getenv(roleEnv) != "police" {
		t.Skip("run by TestNATCameraPath")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	natlab.PrintPolice(ctx, os.Getenv("NATCAM_URL"), os.Getenv("NATCAM_TOKEN"), 1, strings.Split(os.Getenv("NATCAM_CAMERAS"), ","), true, os.Getenv("NATCAM_SHOT"))
}
