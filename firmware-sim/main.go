// Command firmware-sim simulates the village's devices from a provisioning
// bundle: IP speakers (MQTT, Opus play-out, clock sync, reports), RTSP
// cameras and the hall's Modbus relay board. CI, benchmarks and the demo use
// it, and it can load-test a real deployment.
//
//	firmware-sim --provisioning FILE [--record-dir DIR] [--churn 0.1 --churn-every 30s]
//	             [--scenario FILE] [--no-cameras] [--no-relay]
//
// Each device stands alone: one that cannot start (a camera port another
// program holds, a relay link in a missing folder) is logged with its kind,
// id and reason, and the others run on; it exits with an error only when
// no device could start.
//
// It imports only the device/wire contract of the daemon, never its
// internals: a simulator sharing the daemon's code could only agree with it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/loalang/loalang/firmware-sim/relayboard"
	"github.com/loalang/loalang/firmware-sim/speaker"
)

// Scenario shapes the simulated village. Flags set the same fields; a
// scenario file (YAML, strict) is applied first and flags override it.
type Scenario struct {
	// Churn is the fraction of speakers that drop off and come back.
	Churn float64 `yaml:"churn"`
	// ChurnEvery is the period of churn rounds.
	ChurnEvery time.Duration `yaml:"churn_every"`
	// ChurnDown is how long a churned speaker stays offline.
	ChurnDown time.Duration `yaml:"churn_down"`
	// OffsetMax gives each speaker a random clock offset within ±OffsetMax.
	OffsetMax time.Duration `yaml:"offset_max"`
	// DriftMaxPPM gives each speaker a random drift within ±DriftMaxPPM.
	DriftMaxPPM float64 `yaml:"drift_max_ppm"`
	// Loss, Delay and Jitter impair every speaker's received audio.
	Loss   float64       `yaml:"loss"`
	Delay  time.Duration `yaml:"delay"`
	Jitter time.Duration `yaml:"jitter"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "firmware-sim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("firmware-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bundlePath := fs.String("provisioning", "", "provisioning bundle written by loalangd (required)")
	recordDir := fs.String("record-dir", "", "write each speaker's played audio as <speaker>-<stream>.wav with a JSON sidecar")
	scenarioPath := fs.String("scenario", "", "scenario file (YAML)")
	noCameras := fs.Bool("no-cameras", false, "do not simulate cameras")
	noRelay := fs.Bool("no-relay", false, "do not simulate the relay board")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var sc Scenario
	sc.ChurnEvery, sc.ChurnDown = 30*time.Second, 5*time.Second
	fs.Float64Var(&sc.Churn, "churn", 0, "fraction of speakers that drop and return each round")
	fs.DurationVar(&sc.ChurnEvery, "churn-every", sc.ChurnEvery, "churn period")
	fs.DurationVar(&sc.ChurnDown, "churn-down", sc.ChurnDown, "how long a churned speaker stays away")
	fs.DurationVar(&sc.OffsetMax, "clock-offset-max", 0, "random clock offset within ±this per speaker")
	fs.Float64Var(&sc.DriftMaxPPM, "drift-max-ppm", 0, "random clock drift within ±this per speaker")
	fs.Float64Var(&sc.Loss, "loss", 0, "audio message loss probability")
	fs.DurationVar(&sc.Delay, "delay", 0, "extra audio delay")
	fs.DurationVar(&sc.Jitter, "jitter", 0, "audio delay jitter")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bundlePath == "" {
		return errors.New("--provisioning is required")
	}
	if *scenarioPath != "" {
		if err := loadScenario(*scenarioPath, &sc); err != nil {
			return err
		}
		// Flags given explicitly win over the file.
		fs.Visit(func(f *flag.Flag) { fs.Set(f.Name, f.Value.String()) })
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	base := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	log := base.With("component", "firmware-sim")
	raw, err := os.ReadFile(*bundlePath)
	if err != nil {
		return err
	}
	var b wire.Bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return fmt.Errorf("%s: %w", *bundlePath, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Each simulated device stands alone: one that cannot start (a busy
	// camera port, a relay link in a missing folder) is reported and the
	// rest of the village runs on.
	var failed []string
	fail := func(kind, id string, err error) {
		failed = append(failed, id)
		log.Error("simulated device failed; the others run on", "kind", kind, "device", id, "err", err)
	}
	speakers := startSpeakers(ctx, &wg, b, sc, *recordDir, base, fail)
	cameras := 0
	if !*noCameras {
		for _, c := range b.Cameras {
			cam, err := startCamera(c, base, log)
			if err != nil {
				fail("camera", c.ID, err)
				continue
			}
			cameras++
			defer cam.Close()
		}
	}
	relays := 0
	if !*noRelay {
		for _, r := range b.Relays {
			board, err := startRelay(r)
			if err != nil {
				fail("relay board", r.ID, err)
				continue
			}
			relays++
			defer board.Close()
			log.Info("relay board attached", "board", r.ID, "port", r.Port)
		}
	}
	if len(speakers)+cameras+relays == 0 && len(failed) > 0 {
		return fmt.Errorf("no simulated device could start (failed: %v)", failed)
	}
	log.Info("village simulated", "speakers", len(speakers), "cameras", cameras, "relay_boards", relays, "failed", failed)
	if sc.Churn > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); churn(ctx, speakers, sc, log) }()
	}
	<-ctx.Done()
	return nil
}

func loadScenario(path string, sc *Scenario) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(sc); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// startSpeakers starts every speaker of the bundle; one that cannot start
// is passed to fail and skipped.
func startSpeakers(ctx context.Context, wg *sync.WaitGroup, b wire.Bundle, sc Scenario, recordDir string, log *slog.Logger, fail func(kind, id string, err error)) []*speaker.Speaker {
	var out []*speaker.Speaker
	for i, d := range b.Devices {
		if d.Kind != wire.KindSpeaker {
			continue
		}
		cfg := speaker.Config{
			ID: d.ID, Site: b.Site, Broker: b.Broker, Username: d.Username, Password: d.Password, Zones: d.Zones,
			Firmware: "firmware-sim/1", Loss: sc.Loss, ExtraDelay: sc.Delay, Jitter: sc.Jitter, RecordDir: recordDir,
			Seed: int64(i + 1), Log: log,
		}
		if recordDir == "" {
			cfg.KeepPlayed = -1 // nothing reads the audio: skip decoding
		}
		if sc.OffsetMax > 0 {
			cfg.ClockOffset = time.Duration((rand.Float64()*2 - 1) * float64(sc.OffsetMax))
		}
		if sc.DriftMaxPPM > 0 {
			cfg.DriftPPM = (rand.Float64()*2 - 1) * sc.DriftMaxPPM
		}
		s, err := speaker.New(cfg)
		if err != nil {
			fail("speaker", d.ID, err)
			continue
		}
		out = append(out, s)
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	return out
}

// startRelay plugs in a simulated relay board at its link path, saying what
// to do when the link's folder is missing (a relative path in the bundle is
// taken from the current directory).
func startRelay(r wire.BundleRelay) (*relayboard.Board, error) {
	if dir := filepath.Dir(r.Port); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("link %s: folder %s: %w (run firmware-sim from the folder the relative path is meant from, or use an absolute relay port path)", r.Port, dir, err)
		}
	}
	board, err := relayboard.New(relayboard.Options{Link: r.Port, SlaveID: uint8(r.SlaveID), Coils: r.Coils})
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", r.Port, err)
	}
	return board, nil
}

func startCamera(c wire.BundleCamera, base, log *slog.Logger) (*camsim.Sim, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("camera %s: not an rtsp URL", c.ID)
	}
	cam, err := camsim.New(camsim.Options{Path: u.Path, Logger: base.With("component", "camsim", "camera", c.ID)})
	if err != nil {
		return nil, fmt.Errorf("camera %s: %w", c.ID, err)
	}
	if _, err := cam.Start(u.Host); err != nil {
		return nil, fmt.Errorf("camera %s: RTSP on %s: %w", c.ID, u.Host, err)
	}
	log.Info("camera streaming", "camera", c.ID, "addr", u.Host, "path", u.Path)
	return cam, nil
}

// churn takes a random fraction of speakers off the network each round
// (their connections die without DISCONNECT, so wills fire) and brings them
// back after ChurnDown.
func churn(ctx context.Context, speakers []*speaker.Speaker, sc Scenario, log *slog.Logger) {
	t := time.NewTicker(sc.ChurnEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := int(float64(len(speakers))*sc.Churn + 0.5)
		picked := rand.Perm(len(speakers))[:n]
		for _, i := range picked {
			speakers[i].SetOnline(false)
		}
		log.Info("churn: speakers dropped", "count", n)
		select {
		case <-ctx.Done():
			return
		case <-time.After(sc.ChurnDown):
		}
		for _, i := range picked {
			speakers[i].SetOnline(true)
		}
	}
}
