package auth

import (
	"slices"
	"sync"
	"time"

	"github.com/loalang/loalang/audit"
)

// Sign-in auditing under a flood. Every failed sign-in that was checked is
// audited on its own: the source's token bucket (Limiter) bounds them to
// Burst plus one per Every. Throttled attempts cost the caller nothing, so
// they are aggregated: the first from a source in a window is written at
// once, the rest are counted and written as one summary entry when the
// window ends. An anonymous flood therefore grows the audit trail by a
// bounded amount per source and minute, whatever its rate
// (docs/security.md, "Anonymous web caller").

// throttleWindow is how long throttled attempts from one source are
// counted into one summary entry.
const throttleWindow = time.Minute

// maxThrottleSources bounds the open windows; beyond it, new sources share
// one window keyed "*".
const maxThrottleSources = 10000

// maxThrottleNames bounds the usernames a summary lists.
const maxThrottleNames = 4

// throttled is one source's open window.
type throttled struct {
	ip        string
	from, to  time.Time
	count     int // after the first, which was written at once
	names     []string
	malformed int
}

// throttleLog holds the open windows.
type throttleLog struct {
	mu   sync.Mutex
	open map[string]*throttled
}

// add records a throttled attempt and returns the entries to write now.
func (l *throttleLog) add(now time.Time, source, ip, username string) []audit.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = map[string]*throttled{}
	}
	var out []audit.Entry
	if w := l.open[source]; w != nil && now.Sub(w.from) >= throttleWindow {
		out = append(out, w.summary()...)
		delete(l.open, source)
	}
	if _, ok := l.open[source]; !ok && len(l.open) >= maxThrottleSources {
		source, ip = "*", "many"
	}
	w := l.open[source]
	if w == nil {
		l.open[source] = &throttled{ip: ip, from: now, to: now}
		actor := username
		detail := map[string]any{"ip": ip}
		if ValidUsername(username) != nil {
			actor = ""
			detail["malformed_username"] = true
		}
		return append(out, audit.Entry{Time: now, Actor: actor, Action: audit.LoginThrottled, Detail: detail})
	}
	w.to = now
	w.count++
	switch {
	case ValidUsername(username) != nil:
		w.malformed++
	case len(w.names) < maxThrottleNames && !slices.Contains(w.names, username):
		w.names = append(w.names, username)
	}
	return out
}

// summary is the window's entry, if anything was counted after the first.
func (w *throttled) summary() []audit.Entry {
	if w.count == 0 {
		return nil
	}
	d := map[string]any{"ip": w.ip, "count": w.count, "from": w.from.UTC().Format(time.RFC3339), "summary": true}
	if len(w.names) > 0 {
		d["usernames"] = w.names
	}
	if w.malformed > 0 {
		d["malformed_usernames"] = w.malformed
	}
	return []audit.Entry{{Time: w.to, Action: audit.LoginThrottled, Detail: d}}
}

// flush closes the windows that ended by now (all of them when all is
// set) and returns their summaries.
func (l *throttleLog) flush(now time.Time, all bool) []audit.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []audit.Entry
	for k, w := range l.open {
		if all || now.Sub(w.from) >= throttleWindow {
			out = append(out, w.summary()...)
			delete(l.open, k)
		}
	}
	return out
}
