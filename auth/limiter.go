package auth

import (
	"sync"
	"time"
)

// Limiter throttles failed logins per key (a username and, separately, a
// client address) with a token bucket: Burst failures are free, then one
// more every Every. Successful logins do not consume tokens.
type Limiter struct {
	Burst int
	Every time.Duration
	Now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter returns a limiter.
func NewLimiter(burst int, every time.Duration) *Limiter {
	return &Limiter{Burst: burst, Every: every, Now: time.Now, buckets: map[string]*bucket{}}
}

func (l *Limiter) refill(key string, now time.Time) *bucket {
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: float64(l.Burst), at: now}
		l.buckets[key] = b
	}
	b.tokens = min(float64(l.Burst), b.tokens+now.Sub(b.at).Seconds()/l.Every.Seconds())
	b.at = now
	return b
}

// Allow reports whether every key may try to log in now.
func (l *Limiter) Allow(keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	for _, k := range keys {
		if l.refill(k, now).tokens < 1 {
			return false
		}
	}
	return true
}

// Fail records a failed attempt against every key.
func (l *Limiter) Fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	for _, k := range keys {
		b := l.refill(k, now)
		b.tokens = max(0, b.tokens-1)
	}
	if len(l.buckets) > 10000 { // bound memory under a spray of usernames
		for k, b := range l.buckets {
			if b.tokens >= float64(l.Burst) {
				delete(l.buckets, k)
			}
		}
	}
}
