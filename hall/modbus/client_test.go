package modbus

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/loalang/loalang/firmware-sim/relayboard"
	"go.bug.st/serial"
)

// TestClientAgainstSimulatedBoard runs the master against the simulated
// board on a pty, through go.bug.st/serial as the daemon does.
func TestClientAgainstSimulatedBoard(t *testing.T) {
	b, err := relayboard.New(relayboard.Options{Link: filepath.Join(t.TempDir(), "relay0"), Coils: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	port, err := serial.Open(b.Path(), &serial.Mode{BaudRate: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	c := NewClient(port, 1, 9600, 300*time.Millisecond)
	ctx := context.Background()

	if err := c.WriteCoil(ctx, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteCoils(ctx, 2, []bool{true, false, true}); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadCoils(ctx, 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, true, false, true, false, false, false}
	if !slices.Equal(got, want) || !slices.Equal(b.Coils(), want) {
		t.Fatalf("read %v, board %v, want %v", got, b.Coils(), want)
	}

	var ex *ExceptionError
	if _, err := c.ReadCoils(ctx, 7, 4); !errors.As(err, &ex) || ex.Code != 2 {
		t.Fatalf("want illegal address exception, got %v", err)
	}

	b.InjectCRCErrors(1)
	if err := c.WriteCoil(ctx, 1, true); !errors.Is(err, ErrCRC) {
		t.Fatalf("want ErrCRC, got %v", err)
	}
	b.InjectTimeouts(1)
	start := time.Now()
	if _, err := c.ReadCoils(ctx, 0, 8); !errors.Is(err, ErrTimeout) {
		t.Fatalf("want ErrTimeout, got %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("timeout took %v, want about 300ms", d)
	}
	// The line recovers after the faults.
	if got, err := c.ReadCoils(ctx, 0, 2); err != nil || !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("after faults: %v %v", got, err)
	}

	// Cancellation ends a wait for an answer that never comes.
	b.InjectTimeouts(1)
	cctx, cancel := context.WithTimeout(ctx, 60*time.Millisecond)
	defer cancel()
	if _, err := c.ReadCoils(cctx, 0, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}
