package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// CPUProfile fetches a CPU profile of d seconds from the pprof listener of
// the loalangd whose data directory is dir (ready.json's "pprof", present
// when the config sets debug.pprof_addr) and writes it to out.
func CPUProfile(ctx context.Context, dir string, d time.Duration, out string) error {
	raw, err := os.ReadFile(filepath.Join(dir, readyFile))
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	var r struct{ Pprof string }
	if err := json.Unmarshal(raw, &r); err != nil || r.Pprof == "" {
		return fmt.Errorf("cpu profile: no pprof address in %s (set debug.pprof_addr)", readyFile)
	}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.Pprof, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cpu profile: HTTP %d", resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("cpu profile: %w", err)
	}
	return f.Close()
}
