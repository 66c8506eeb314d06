package health

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

func TestSetAndProblems(t *testing.T) {
	r := New()
	r.Set("mqtt", nil)
	r.Set("scheduler", errors.New("store: page 7 unreadable"))
	p := r.Problems()
	if len(p) != 1 || p[0].Component != "scheduler" || p[0].Reason != "store: page 7 unreadable" {
		t.Fatalf("problems = %+v", p)
	}
	since := p[0].Since
	r.Set("scheduler", errors.New("still bad"))
	if p := r.Problems(); p[0].Since != since || p[0].Reason != "still bad" {
		t.Fatalf("a continuing fault must keep its start: %+v", p)
	}
	r.Set("scheduler", nil)
	if p := r.Problems(); len(p) != 0 {
		t.Fatalf("healthy again, problems = %+v", p)
	}
	if c := r.Components(); len(c) != 2 || !c["mqtt"] || !c["scheduler"] {
		t.Fatalf("components = %v", c)
	}
}

// TestSuperviseRestartsAfterPanic checks that a panicking service is
// reported bad, restarted, and reported healthy once it runs again.
func TestSuperviseRestartsAfterPanic(t *testing.T) {
	r := New()
	ctx, cancel := context.WithCancel(context.Background())
	var runs atomic.Int32
	stops := make(chan []Problem, 2)
	log := slog.New(handlerFunc(func(rec slog.Record) {
		if rec.Message == "background service stopped" {
			stops <- r.Problems() // logged after the fault is recorded
		}
	}))
	running := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Supervise(ctx, log, "scheduler", func(ctx context.Context) error {
			switch runs.Add(1) {
			case 1:
				panic("bad record")
			case 2:
				return errors.New("store closed")
			}
			close(running)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	for _, want := range []string{"panic: bad record", "store closed"} {
		select {
		case p := <-stops:
			if len(p) != 1 || p[0].Component != "scheduler" || p[0].Reason != want {
				t.Fatalf("problems after a stop = %+v, want reason %q", p, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no stop reported (want %q)", want)
		}
	}
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("service not restarted after its error")
	}
	if p := r.Problems(); len(p) != 0 {
		t.Fatalf("running service still reported bad: %+v", p)
	}
	cancel()
	<-done
	if p := r.Problems(); len(p) != 0 {
		t.Fatalf("a clean stop is not a fault: %+v", p)
	}
}

// handlerFunc is a slog.Handler that passes every record to a function.
type handlerFunc func(slog.Record)

func (h handlerFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (h handlerFunc) Handle(_ context.Context, r slog.Record) error { h(r); return nil }
func (h handlerFunc) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h handlerFunc) WithGroup(string) slog.Handler                 { return h }
