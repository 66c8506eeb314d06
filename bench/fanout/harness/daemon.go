package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// Files the daemon writes into its data directory (daemon/provision.go).
const (
	readyFile     = "ready.json"
	adminPassFile = "initial-admin-password"
	bundleFile    = "provisioning.json"
)

// VillageConfig returns a loalangd configuration (YAML) for site with n
// speakers spread round-robin over the zones z1..zZones, every listener on
// a loopback port 0.
func VillageConfig(site string, n, zones int) string {
	return VillageConfigProbes(site, n, zones, 0)
}

// ProbePrefix starts the id of every probe device: provisioned like a
// speaker, but not simulated (StartFleet skips it) and left out of the
// broadcast's delivery list (GetBroadcast), because a benchmark probe
// connects as it. Each login may use only its own MQTT client id, so a probe
// cannot borrow a simulated speaker's credentials.
const ProbePrefix = "probe-"

// VillageConfigProbes is VillageConfig with probes extra devices
// (ProbePrefix ids) spread over the zones like the speakers.
func VillageConfigProbes(site string, n, zones, probes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "site: %s\nhttp:\n  addr: 127.0.0.1:0\nmqtt:\n  listen: 127.0.0.1:0\n", site)
	b.WriteString("webrtc:\n  udp_port: 0\n  loopback_candidates: true\nsound:\n  enabled: false\n")
	// The benchmark logs in once per run; keep the limiter out of the way.
	b.WriteString("auth:\n  login_burst: 100\nzones:\n")
	for z := 1; z <= zones; z++ {
		fmt.Fprintf(&b, "  - id: z%d\n    name: Zone %d\n", z, z)
	}
	b.WriteString("devices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: spk-%04d\n    kind: speaker\n    name: Loa %d\n    zones: [z%d]\n", i+1, i+1, i%zones+1)
	}
	for i := 0; i < probes; i++ {
		fmt.Fprintf(&b, "  - id: %s%04d\n    kind: speaker\n    name: Probe %d\n    zones: [z%d]\n", ProbePrefix, i+1, i+1, i%zones+1)
	}
	return b.String()
}

// ZoneIDs returns z1..zN.
func ZoneIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("z%d", i+1)
	}
	return out
}

// Daemon is a loalangd child process with an authenticated API client.
type Daemon struct {
	*Child
	Dir    string
	HTTP   string // host:port
	MQTT   string // host:port
	Bundle wire.Bundle
	token  string
	hc     *http.Client
}

// StartDaemon writes cfgYAML to dir/loalangd.yaml and runs bin with it and
// dir as data directory, logging to dir/loalangd.log at warn level. It waits
// for ready.json, reads the provisioning bundle and logs in as admin.
func StartDaemon(ctx context.Context, bin, dir, cfgYAML string) (*Daemon, error) {
	cfgPath := filepath.Join(dir, "loalangd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "loalangd.log"))
	if err != nil {
		return nil, fmt.Errorf("create daemon log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, "--config", cfgPath, "--data-dir", dir, "--http", "127.0.0.1:0",
		"--mqtt", "127.0.0.1:0", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	child, err := StartChild(cmd)
	if err != nil {
		return nil, err
	}
	d := &Daemon{Child: child, Dir: dir, hc: &http.Client{Timeout: 30 * time.Second}}
	if err := d.waitReady(ctx, 120*time.Second); err != nil {
		_ = child.Close(5 * time.Second)
		return nil, err
	}
	return d, nil
}

func (d *Daemon) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		raw, err := os.ReadFile(filepath.Join(d.Dir, readyFile))
		if err == nil {
			var r struct{ HTTP, MQTT string }
			if json.Unmarshal(raw, &r) == nil && r.HTTP != "" && r.MQTT != "" {
				d.HTTP, d.MQTT = r.HTTP, r.MQTT
				break
			}
		}
		select {
		case <-d.Exited():
			log, _ := os.ReadFile(filepath.Join(d.Dir, "loalangd.log"))
			return fmt.Errorf("loalangd exited before ready: %s", tail(log, 2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loalangd not ready after %v", within)
		}
	}
	raw, err := os.ReadFile(filepath.Join(d.Dir, bundleFile))
	if err != nil {
		return fmt.Errorf("read bundle: %w", err)
	}
	if err := json.Unmarshal(raw, &d.Bundle); err != nil {
		return fmt.Errorf("read bundle: %w", err)
	}
	// Use the address actually bound, whatever the bundle advertises.
	d.Bundle.Broker = "tcp://" + d.MQTT
	pw, err := os.ReadFile(filepath.Join(d.Dir, adminPassFile))
	if err != nil {
		return fmt.Errorf("read admin password: %w", err)
	}
	var tok struct{ Token string }
	if err := d.call(ctx, "POST", "/api/v1/login", map[string]string{"username": "admin", "password": strings.TrimSpace(string(pw))}, &tok); err != nil {
		return err
	}
	d.token = tok.Token
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// APIError is a non-2xx answer of the daemon's API.
type APIError struct {
	Status int
	Body   string
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// ErrNotFound is returned by API calls answered 404.
var ErrNotFound = errors.New("not found")

func (d *Daemon) call(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+d.HTTP+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return d.do(req, method+" "+path, out)
}

func (d *Daemon) do(req *http.Request, what string, out any) error {
	return d.doWith(d.hc, req, what, out)
}

// uploadTimeout bounds an upload: a 10-minute WAV is 58 MB, and the daemon
// encodes it to Opus before it answers.
const uploadTimeout = 10 * time.Minute

func (d *Daemon) doWith(hc *http.Client, req *http.Request, what string, out any) error {
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %w: %s", what, ErrNotFound, raw)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %w", what, &APIError{Status: resp.StatusCode, Body: tail(raw, 500)})
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s: decode answer: %w", what, err)
		}
	}
	return nil
}

// Upload posts a media file (multipart field "file") and returns its id.
func (d *Daemon) Upload(ctx context.Context, name string, data []byte) (string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		return "", err
	}
	if _, err := fw.Write(data); err != nil {
		return "", err
	}
	if err := mw.Close(); err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+d.HTTP+"/api/v1/media", &buf)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var out struct {
		ID string `json:"id"`
	}
	if err := d.doWith(&http.Client{Timeout: uploadTimeout}, req, "upload "+name, &out); err != nil {
		return "", err
	}
	if out.ID == "" {
		return "", fmt.Errorf("upload %s: no id in answer", name)
	}
	return out.ID, nil
}

// Delivery is one speaker's counts in a broadcast (20 ms packets).
type Delivery struct {
	ID             string    `json:"id"`
	FramesExpected uint64    `json:"frames_expected"`
	FramesPlayed   uint64    `json:"frames_played"`
	FramesLate     uint64    `json:"frames_late"`
	FramesLost     uint64    `json:"frames_lost"`
	ClockErrorUS   int64     `json:"clock_error_us"`
	LastReport     time.Time `json:"last_report"`
}

// Broadcast is the part of GET /api/v1/broadcasts/{id} the benchmarks read.
type Broadcast struct {
	ID        string     `json:"id"`
	State     string     `json:"state"`
	Reason    string     `json:"reason"`
	Packets   int        `json:"packets"`
	StreamIDs []uint32   `json:"stream_ids"`
	Started   time.Time  `json:"started"`
	Ended     time.Time  `json:"ended"`
	Devices   []Delivery `json:"devices"`
}

// Ended reports whether the broadcast is in a final state.
func (b Broadcast) Final() bool {
	switch b.State {
	case "done", "stopped", "failed", "interrupted":
		return true
	}
	return false
}

// StartBroadcast starts a stored clip in zones at normal priority.
func (d *Daemon) StartBroadcast(ctx context.Context, mediaID string, zones []string, volume int) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := d.call(ctx, "POST", "/api/v1/broadcasts", map[string]any{"media_id": mediaID, "zones": zones,
		"priority": "normal", "volume": volume}, &out)
	if err != nil {
		return "", err
	}
	return out.ID, nil
}

// GetBroadcast reads a broadcast.
func (d *Daemon) GetBroadcast(ctx context.Context, id string) (Broadcast, error) {
	var b Broadcast
	err := d.call(ctx, "GET", "/api/v1/broadcasts/"+id, nil, &b)
	kept := b.Devices[:0]
	for _, dv := range b.Devices {
		if !strings.HasPrefix(dv.ID, ProbePrefix) {
			kept = append(kept, dv)
		}
	}
	b.Devices = kept
	return b, err
}

// WaitFinal polls the broadcast until it reaches a final state. It first
// sleeps for expect (the clip's length), so that polling, which costs the
// daemon CPU (the answer lists every speaker), stays out of a CPU window.
func (d *Daemon) WaitFinal(ctx context.Context, id string, expect, within time.Duration) (Broadcast, error) {
	deadline := time.Now().Add(within)
	select {
	case <-ctx.Done():
		return Broadcast{}, ctx.Err()
	case <-time.After(expect):
	}
	for {
		b, err := d.GetBroadcast(ctx, id)
		if err != nil {
			return b, err
		}
		if b.Final() {
			return b, nil
		}
		if time.Now().After(deadline) {
			return b, fmt.Errorf("broadcast %s still %s after %v", id, b.State, within)
		}
		select {
		case <-ctx.Done():
			return b, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitReports polls a final broadcast until every expected speaker's counts
// cover all packets (final reports in) or within passes, and returns the
// last reading.
func (d *Daemon) WaitReports(ctx context.Context, id string, within time.Duration) (Broadcast, error) {
	deadline := time.Now().Add(within)
	for {
		b, err := d.GetBroadcast(ctx, id)
		if err != nil {
			return b, err
		}
		complete := len(b.Devices) > 0
		for _, dv := range b.Devices {
			if dv.FramesExpected < uint64(b.Packets) {
				complete = false
				break
			}
		}
		if complete || time.Now().After(deadline) {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return b, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// OnlineCount returns how many devices the daemon currently sees online.
func (d *Daemon) OnlineCount(ctx context.Context) (int, error) {
	var list []struct {
		Online bool `json:"online"`
	}
	if err := d.call(ctx, "GET", "/api/v1/devices", nil, &list); err != nil {
		return 0, err
	}
	n := 0
	for _, x := range list {
		if x.Online {
			n++
		}
	}
	return n, nil
}

// WaitOnline polls until the daemon sees at least n devices online.
func (d *Daemon) WaitOnline(ctx context.Context, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		got, err := d.OnlineCount(ctx)
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d devices online after %v", got, n, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close stops the daemon (SIGTERM, then SIGKILL after 10 s).
func (d *Daemon) Close() error { return d.Child.Close(10 * time.Second) }

// MessageCounts are a broker's PUBLISH counters: messages received from
// clients and delivered to subscribers.
type MessageCounts struct {
	In, Out int64
}

// Sub returns c − o, the messages carried between two readings.
func (c MessageCounts) Sub(o MessageCounts) MessageCounts {
	return MessageCounts{In: c.In - o.In, Out: c.Out - o.Out}
}

// BrokerCounts scrapes GET /metrics as admin and returns the embedded
// broker's loalang_broker_messages_received_total and
// loalang_broker_messages_sent_total. It fails if the daemon has no such
// metrics (an external broker, or a loalangd older than them).
func (d *Daemon) BrokerCounts(ctx context.Context) (MessageCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HTTP+"/metrics", nil)
	if err != nil {
		return MessageCounts{}, fmt.Errorf("scrape metrics: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.hc.Do(req)
	if err != nil {
		return MessageCounts{}, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return MessageCounts{}, fmt.Errorf("scrape metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return MessageCounts{}, fmt.Errorf("scrape metrics: %w", &APIError{Status: resp.StatusCode, Body: tail(raw, 500)})
	}
	var c MessageCounts
	var found int
	for _, line := range strings.Split(string(raw), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "loalang_broker_messages_received_total":
			dst = &c.In
		case "loalang_broker_messages_sent_total":
			dst = &c.Out
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return MessageCounts{}, fmt.Errorf("scrape metrics: %s: %w", name, err)
		}
		*dst = int64(f)
		found++
	}
	if found != 2 {
		return MessageCounts{}, errors.New("scrape metrics: no loalang_broker_messages_* metrics (external broker or older loalangd)")
	}
	return c, nil
}
