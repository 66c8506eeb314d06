package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"github.com/loalang/loalang/audit"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

// buildTools builds loalangd and firmware-sim once per test.
func buildTools(t *testing.T) (loalangd, fsim string) {
	t.Helper()
	dir := t.TempDir()
	loalangd, fsim = filepath.Join(dir, "loalangd"), filepath.Join(dir, "firmware-sim")
	for bin, pkg := range map[string]string{loalangd: "github.com/loalang/loalang/cmd/loalangd", fsim: "github.com/loalang/loalang/firmware-sim"} {
		if out, err := exec.Command("go", "build", "-tags", "nolibopusfile", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return loalangd, fsim
}

// attempt is one start of the real loalangd: it either became ready or
// exited.
type attempt struct {
	started bool
	exit    error
	stderr  string
	took    time.Duration
}

// tryStart runs loalangd on dir until ready.json appears (then stops it
// with SIGTERM) or it exits.
func tryStart(t *testing.T, bin, cfgFile, dir string) attempt {
	t.Helper()
	os.Remove(filepath.Join(dir, daemon.ReadyFile))
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--config", cfgFile, "--data-dir", dir, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "LOALANG_WEBRTC_UDP_PORT=0")
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case err := <-exited:
			return attempt{exit: err, stderr: stderr.String(), took: time.Since(start)}
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			t.Fatalf("loalangd neither ready nor exited within 60 s:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := os.Stat(filepath.Join(dir, daemon.ReadyFile)); err == nil {
			a := attempt{started: true, took: time.Since(start)}
			// Serve a moment: the old code reached ready on a damaged
			// file and then died in the scheduler.
			time.Sleep(time.Second)
			cmd.Process.Signal(syscall.SIGTERM)
			a.exit = <-exited
			a.stderr = stderr.String()
			return a
		}
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from+"/.", to).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", from, err, out)
	}
}

func sum(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "absent"
	}
	return fmt.Sprintf("%x", sha256.Sum256(raw))[:16]
}

const crashConfig = `site: crash
zones:
  - id: a
  - id: b
schedule:
  time_zone: Asia/Ho_Chi_Minh
devices:
`

func writeCrashConfig(t *testing.T, speakers int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(crashConfig)
	for i := range speakers {
		fmt.Fprintf(&b, "  - id: spk-%02d\n    kind: speaker\n    zones: [%s]\n", i+1, string(rune('a'+i%2)))
	}
	path := filepath.Join(t.TempDir(), "crash.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReliabilityDamage is finding 1's damage matrix against the real
// binary: an install with data is damaged in each way, then loalangd is
// started on it. The old daemon panicked on 6 of 17, served on 4 and
// wrote to every file before reading it. Now each kind has one expected
// behaviour: a damaged file is refused with what is wrong and how to
// recover, and is byte for byte as it was; a lost or emptied file next
// to an earlier install is refused with how to restore or re-initialise;
// a read-only data dir is refused naming it; only a damaged first meta
// page, which bbolt's second meta page covers, starts.
func TestReliabilityDamage(t *testing.T) {
	t.Parallel() // real binaries only: it overlaps the soak (make reliability ≤ 15 min)
	bin, _ := buildTools(t)
	cfgFile := writeCrashConfig(t, 6)
	template := t.TempDir()
	// A used install: the daemon's own records, then enough audit entries
	// for branch pages, compacted so every page holds live data.
	if a := tryStart(t, bin, cfgFile, template); !a.started {
		t.Fatalf("template start: %v\n%s", a.exit, a.stderr)
	}
	db, err := store.Open(filepath.Join(template, daemon.DBFile), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	events := make([]store.Event, 3000)
	for i := range events {
		events[i] = store.Event{Time: time.Now().Add(time.Duration(i-len(events)) * time.Second), Actor: "spk-01", Action: audit.DeviceOnline, Target: "spk-01"}
	}
	if err := db.AppendAudit(events...); err != nil {
		t.Fatal(err)
	}
	db.Close()
	storetest.Compact(t, filepath.Join(template, daemon.DBFile))

	type row struct{ kind, damage, want string }
	var rows []row
	for _, k := range storetest.DamageKinds {
		rows = append(rows, row{kind: k})
	}
	seeds := []uint64{2, 3}
	if fullReliability() {
		seeds = []uint64{2, 3, 4, 5, 6, 7, 8, 9}
	}
	for _, s := range seeds {
		rows = append(rows, row{kind: storetest.DataPages, damage: fmt.Sprint(s)})
	}
	rows = append(rows, row{kind: "read-only"})

	var table []string
	for _, r := range rows {
		dir := t.TempDir()
		copyTree(t, template, dir)
		dbPath := filepath.Join(dir, daemon.DBFile)
		seed := uint64(1)
		if r.damage != "" {
			fmt.Sscan(r.damage, &seed)
		}
		did := "data dir mounted read-only"
		if r.kind == "read-only" {
			if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
				t.Logf("read-only: cannot bind-mount (%v %s); row skipped", err, out)
				continue
			}
			exec.Command("mount", "-o", "remount,bind,ro", dir).Run()
			t.Cleanup(func() { exec.Command("umount", dir).Run() })
		} else if did, err = storetest.Damage(dbPath, r.kind, seed); err != nil {
			t.Fatal(err)
		}
		before := sum(dbPath)
		a := tryStart(t, bin, cfgFile, dir)
		after := sum(dbPath)
		msg := a.stderr
		if i := strings.LastIndex(msg, "loalangd: "); i >= 0 {
			msg = msg[i:]
		}
		behaviour := "refused"
		if a.started {
			behaviour = "started"
			msg = "served 1 s, stopped cleanly, check passes"
		}
		var problems []string
		if strings.Contains(a.stderr, "panic: ") || strings.Contains(a.stderr, "goroutine ") || strings.Contains(a.stderr, "fatal error") {
			problems = append(problems, "panicked")
		}
		switch r.kind {
		case storetest.Meta0:
			if !a.started || a.exit != nil {
				problems = append(problems, "did not start and stop cleanly on bbolt's second meta page")
			} else if err := store.Verify(dbPath, time.Second); err != nil {
				problems = append(problems, "check fails after serving: "+err.Error())
				msg = err.Error()
			}
		case storetest.Empty, storetest.Missing:
			if a.started || !strings.Contains(msg, "earlier install") || !strings.Contains(msg, "loalangd restore") || !strings.Contains(msg, "loalangd reinit") {
				problems = append(problems, "not refused as an earlier install with restore and reinit")
			}
		case "read-only":
			if a.started || !strings.Contains(msg, "read-only file system") || !strings.Contains(msg, "writable") {
				problems = append(problems, "not refused naming the read-only file system")
			}
		default:
			if a.started || !strings.Contains(msg, "is damaged") || !strings.Contains(msg, "was not modified") || !strings.Contains(msg, "loalangd restore") {
				problems = append(problems, "not refused as damaged with how to recover")
			}
		}
		if !a.started && after != before {
			problems = append(problems, "the refused file was written")
		}
		name := r.kind
		if r.damage != "" {
			name += " #" + r.damage
		}
		line := fmt.Sprintf("%-16s | %-62s | %-7s | %5dms | %s", name, did, behaviour, a.took.Milliseconds(), firstLine(msg, 150))
		table = append(table, line)
		if len(problems) > 0 {
			t.Errorf("%s: %s\n%s", name, strings.Join(problems, "; "), a.stderr)
		}
	}
	fmt.Println("damage matrix: kind | damage | behaviour | time | message")
	for _, l := range table {
		fmt.Println("  " + l)
	}
}

func firstLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// acked is what the daemon acknowledged during the crash loop.
type acked struct {
	mu         sync.Mutex
	schedules  map[string]string // id -> name of the last acknowledged write
	attempted  map[string]string // id -> name of a write in flight
	media      []string
	broadcasts []string
}

func (a *acked) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.schedules) + len(a.media) + len(a.broadcasts)
}

// TestReliabilityCrashLoop kills the real loalangd with SIGKILL at random
// moments while broadcasts start, schedules are created and edited, media
// is uploaded and speakers churn (presence changes are audited). After
// every kill bbolt's check passes and every write the daemon acknowledged
// with 2xx is in the file. 30 rounds in the long form, 3 in the light.
func TestReliabilityCrashLoop(t *testing.T) {
	t.Parallel() // real binaries only: it overlaps the soak (make reliability ≤ 15 min)
	rounds := 3
	if fullReliability() {
		rounds = 30
	}
	bin, fsim := buildTools(t)
	cfgFile := writeCrashConfig(t, 8)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, daemon.DBFile)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	t.Logf("seed %d", seed)
	hc := &http.Client{Timeout: 3 * time.Second}
	ack := &acked{schedules: map[string]string{}, attempted: map[string]string{}}
	var restarts []time.Duration
	var mediaID string
	lostSet, checked := map[string]bool{}, 0 // distinct acknowledged writes found missing

	for round := 0; round < rounds; round++ {
		start := time.Now()
		p := startLoalangd(t, bin, cfgFile, dir)
		restarts = append(restarts, time.Since(start))
		c := login(t, p.base, "admin", adminPassword(t, dir))
		if mediaID == "" {
			mediaID = uploadTone(t, c, 500, 300).ID
			ack.media = append(ack.media, mediaID)
		}
		sim := exec.Command(fsim, "--provisioning", filepath.Join(dir, daemon.BundleFile), "--no-cameras", "--no-relay",
			"--churn", "0.5", "--churn-every", "150ms", "--churn-down", "100ms", "--log-level", "error")
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		post := func(method, path string, body any) (int, []byte) {
			raw, _ := json.Marshal(body)
			req, _ := http.NewRequestWithContext(ctx, method, p.base+path, bytes.NewReader(raw))
			req.Header.Set("Authorization", "Bearer "+c.token)
			resp, err := hc.Do(req)
			if err != nil {
				return 0, nil
			}
			defer resp.Body.Close()
			var out bytes.Buffer
			out.ReadFrom(resp.Body)
			return resp.StatusCode, out.Bytes()
		}
		loop := func(every time.Duration, step func(i int)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					step(i)
					select {
					case <-ctx.Done():
					case <-time.After(every):
					}
				}
			}()
		}
		loop(120*time.Millisecond, func(i int) { // broadcasts
			code, body := post("POST", "/api/v1/broadcasts", map[string]any{"media_id": mediaID, "zones": []string{"a", "b"}[i%2 : i%2+1], "priority": "normal"})
			if code == 201 {
				var b broadcastView
				json.Unmarshal(body, &b)
				ack.mu.Lock()
				ack.broadcasts = append(ack.broadcasts, b.ID)
				ack.mu.Unlock()
			}
		})
		loop(90*time.Millisecond, func(i int) { // schedules: create, then edit
			id := fmt.Sprintf("r%02d-%03d", round, i/2)
			name := fmt.Sprintf("%s v%d", id, i%2)
			sc := map[string]any{"id": id, "name": name, "cron": "0 30 5 * * *", "zones": []string{"a"}, "source": map[string]any{"kind": "media", "media_id": mediaID}}
			method, path, want := "POST", "/api/v1/schedules", 201
			if i%2 == 1 {
				method, path, want = "PUT", "/api/v1/schedules/"+id, 200
			}
			ack.mu.Lock()
			ack.attempted[id] = name
			ack.mu.Unlock()
			if code, _ := post(method, path, sc); code == want {
				ack.mu.Lock()
				ack.schedules[id] = name
				ack.mu.Unlock()
			}
		})
		loop(250*time.Millisecond, func(i int) { // uploads
			req, _ := uploadRequest(ctx, p.base, c.token, fmt.Sprintf("r%d-%d.wav", round, i), 200)
			resp, err := hc.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var info struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&info)
			if resp.StatusCode == 201 {
				ack.mu.Lock()
				ack.media = append(ack.media, info.ID)
				ack.mu.Unlock()
			}
		})
		time.Sleep(time.Duration(300+rng.IntN(2200)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		cancel()
		wg.Wait()
		sim.Process.Signal(syscall.SIGKILL)
		sim.Wait()

		// The file passes the check, and holds every acknowledged write.
		if err := store.Verify(dbPath, time.Second); err != nil {
			t.Fatalf("round %d: check after kill -9: %v", round, err)
		}
		db, err := store.Open(dbPath, time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		ack.mu.Lock()
		for id, name := range ack.schedules {
			checked++
			sc, err := store.Get[schedule.Schedule](db, store.Schedules, id)
			if err != nil || (sc.Name != name && sc.Name != ack.attempted[id]) {
				lostSet["schedule "+id] = true
				t.Errorf("round %d: schedule %s acknowledged as %q: %q %v", round, id, name, sc.Name, err)
			}
		}
		for _, list := range []struct {
			bucket string
			ids    []string
		}{{store.Media, ack.media}, {store.Broadcasts, ack.broadcasts}} {
			for _, id := range list.ids {
				checked++
				if err := db.View(func(tx *store.Tx) error {
					if !tx.Exists(list.bucket, id) {
						return fmt.Errorf("%s/%s missing", list.bucket, id)
					}
					return nil
				}); err != nil {
					lostSet[list.bucket+" "+id] = true
					t.Errorf("round %d: acknowledged %v", round, err)
				}
			}
		}
		ack.mu.Unlock()
		db.Close()
	}
	sorted := slices.Clone(restarts)
	slices.Sort(sorted)
	fmt.Printf("crash loop: %d rounds of kill -9, %d acknowledged writes (%d schedules, %d media, %d broadcasts) checked %d times in all, %d lost; bbolt check passed every round; restart to ready p50 %v max %v\n",
		rounds, ack.count(), len(ack.schedules), len(ack.media), len(ack.broadcasts), checked, len(lostSet),
		sorted[len(sorted)/2].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
	if ack.count() < rounds {
		t.Fatalf("only %d writes acknowledged in %d rounds: the load did not run", ack.count(), rounds)
	}
}

// uploadRequest is a media upload of a tone of ms milliseconds.
func uploadRequest(ctx context.Context, base, token, name string, ms int) (*http.Request, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(audiotest.WAV(audiotest.Tone(440, 0.5, 16000, ms), 16000, 1))
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/media", &body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	return req, nil
}
