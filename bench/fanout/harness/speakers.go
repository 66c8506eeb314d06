package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/speaker"
)

// Binary returns path if it exists, or else builds pkg (a ./... package of
// the module in the working directory) into dir/name with the build tags
// the project needs, and returns that.
func Binary(ctx context.Context, path, pkg, dir, name string) (string, error) {
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return path, nil
	}
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-tags=nolibopusfile", "-o", out, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	return out, nil
}

// Fleet is a set of simulated speakers running in this process.
type Fleet struct {
	Speakers []*speaker.Speaker
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// StartFleet simulates every speaker of the bundle; mutate may adjust each
// speaker's configuration (i is its index in the bundle).
func StartFleet(b wire.Bundle, mutate func(i int, c *speaker.Config)) (*Fleet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{cancel: cancel}
	for i, d := range b.Devices {
		if d.Kind != wire.KindSpeaker || strings.HasPrefix(d.ID, ProbePrefix) {
			continue
		}
		c := speaker.Config{ID: d.ID, Site: b.Site, Broker: b.Broker, Username: d.Username, Password: d.Password,
			Zones: d.Zones, Firmware: "bench", KeepPlayed: -1, Seed: int64(i + 1)}
		if mutate != nil {
			mutate(i, &c)
		}
		s, err := speaker.New(c)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("speaker %s: %w", d.ID, err)
		}
		f.Speakers = append(f.Speakers, s)
		f.wg.Add(1)
		go func() { defer f.wg.Done(); _ = s.Run(ctx) }()
	}
	return f, nil
}

// WaitReady polls until every speaker is connected with its clock synced.
func (f *Fleet) WaitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		n := 0
		for _, s := range f.Speakers {
			if s.Ready() {
				n++
			}
		}
		if n == len(f.Speakers) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d speakers ready after %v", n, len(f.Speakers), within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Overflowed sums the messages the speakers dropped because their run loop
// fell behind.
func (f *Fleet) Overflowed() uint64 {
	var n uint64
	for _, s := range f.Speakers {
		n += s.Overflowed()
	}
	return n
}

// Close stops every speaker and waits for them.
func (f *Fleet) Close() {
	f.cancel()
	f.wg.Wait()
}
