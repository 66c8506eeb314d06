package web

import (
	"github.com/loalang/loalang/audit"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/store"
)

// Sign-in auditing under a flood. Every failed sign-in that was checked is
// audited on its own: the source's token bucket (auth.Limiter) bounds them
// to Burst plus one per LoginEvery. Throttled attempts cost the caller
// nothing, so they are aggregated: the first from a source in a window is
// written at once, the rest are counted and written as one summary entry
// when the window ends. An anonymous flood therefore grows the audit trail
// by a bounded amount per source and minute, whatever its rate
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
func (l *throttleLog) add(now time.Time, source, ip, username string) []store.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = map[string]*throttled{}
	}
	var out []store.Event
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
		if auth.ValidUsername(username) != nil {
			actor = ""
			detail["malformed_username"] = true
		}
		return append(out, store.Event{Time: now, Actor: actor, Action: audit.LoginThrottled, Detail: detail})
	}
	w.to = now
	w.count++
	switch {
	case auth.ValidUsername(username) != nil:
		w.malformed++
	case len(w.names) < maxThrottleNames && !slices.Contains(w.names, username):
		w.names = append(w.names, username)
	}
	return out
}

// summary is the window's entry, if anything was counted after the first.
func (w *throttled) summary() []store.Event {
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
	return []store.Event{{Time: w.to, Action: audit.LoginThrottled, Detail: d}}
}

// flush closes the windows that ended by now (all of them when all is
// set) and returns their summaries.
func (l *throttleLog) flush(now time.Time, all bool) []store.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []store.Event
	for k, w := range l.open {
		if all || now.Sub(w.from) >= throttleWindow {
			out = append(out, w.summary()...)
			delete(l.open, k)
		}
	}
	return out
}

// FlushAudit writes the summaries of throttled sign-ins whose window has
// ended (all of them when final is set, at shutdown). The daemon calls it
// every second.
func (s *Server) FlushAudit(final bool) {
	if ev := s.throttleLog.flush(s.now(), final); len(ev) > 0 {
		if err := s.db.AppendAudit(ev...); err != nil {
			s.log.Error("audit failed", "action", "login.throttled", "err", err)
		}
	}
}

// clientIP is the address the request came from. loalangd trusts no
// forwarding header: behind a reverse proxy every caller would share the
// proxy's address (docs/security.md).
func clientIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return ap.Addr().Unmap().String()
}

// sourceKey is the key a source is throttled by: its IPv4 address, or the
// /64 of an IPv6 address, since one host commonly holds a whole /64 (RFC
// 7421 §1) and could otherwise pick a fresh address per attempt.
func sourceKey(r *http.Request) string {
	a, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return "ip:" + r.RemoteAddr
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip6:" + p.String()
	}
	return "ip:" + a.String()
}

// retryAfter is the Retry-After value (RFC 9110 §10.2.3) for a throttled
// source: whole seconds until its next attempt is allowed.
func (s *Server) retryAfter(r *http.Request) string {
	return strconv.Itoa(max(1, int(math.Ceil(s.limiter.Retry(sourceKey(r)).Seconds()))))
}
