// Package health records whether each long-running part of loalangd is
// working, and why not. It is the one place /healthz, the metrics and the
// web app's alarm banner read from, so a stopped background service can
// never be silent: every part either reports itself healthy or names its
// fault here.
package health

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Problem is one component that is not working.
type Problem struct {
	// Component names the part, e.g. "scheduler", "mqtt", "store".
	Component string `json:"component"`
	// Reason says what is wrong, in words an operator can act on.
	Reason string `json:"reason"`
	// Since is when the component last went bad.
	Since time.Time `json:"since"`
}

// Registry holds the state of every registered component. The zero value
// is not usable; call New.
type Registry struct {
	now func() time.Time

	mu    sync.Mutex
	comps map[string]*Problem // nil value: registered and healthy
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{now: time.Now, comps: make(map[string]*Problem)}
}

// Set records the component's state: err == nil means healthy. The time a
// fault started is kept while the same component stays bad.
func (r *Registry) Set(component string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.comps[component] = nil
		return
	}
	if p := r.comps[component]; p != nil {
		p.Reason = err.Error()
		return
	}
	r.comps[component] = &Problem{Component: component, Reason: err.Error(), Since: r.now()}
}

// Problems returns the components that are bad, sorted by name.
func (r *Registry) Problems() []Problem {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Problem
	for _, p := range r.comps {
		if p != nil {
			out = append(out, *p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Component < out[j].Component })
	return out
}

// Components returns every registered component with whether it is up,
// for metrics.
func (r *Registry) Components() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.comps))
	for name, p := range r.comps {
		out[name] = p == nil
	}
	return out
}

// Supervise runs run until ctx ends, restarting it with capped, jittered
// backoff whenever it returns or panics before then. While it is down the
// component is bad in r, with the error as the reason; it is marked healthy
// when run starts, so run should return an error as soon as it cannot work.
// Supervise blocks; start it in a goroutine its owner waits for.
func (r *Registry) Supervise(ctx context.Context, log *slog.Logger, component string, run func(context.Context) error) {
	backoff := 100 * time.Millisecond
	const maxBackoff = 5 * time.Second
	for {
		r.Set(component, nil)
		started := r.now()
		err := runRecover(ctx, run)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errStopped
		}
		r.Set(component, err)
		log.Error("background service stopped", "service", component, "err", err, "retry_in", backoff)
		if r.now().Sub(started) > time.Minute {
			backoff = 100 * time.Millisecond // it ran a while: start the ladder again
		}
		t := time.NewTimer(backoff + time.Duration(rand.Int64N(int64(backoff/2)+1)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
