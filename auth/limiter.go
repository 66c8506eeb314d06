package auth

import (
	"sync"
	"time"
)

// Limiter throttles failed sign-ins by where they come from, and slows
// guessing on one account without ever locking its owner out.
//
//   - Each source (a client address, see web's source key) has a token
//     bucket: Burst failures are free, then one more every Every. A source
//     with an empty bucket is refused (429) before any password is checked.
//     Successful sign-ins cost nothing.
//   - Each account name has a failure count that decays by one every
//     Every. Once it reaches Burst, every attempt on that name, the right
//     password included and from any source, waits Delay before the
//     password is checked: BaseDelay, doubling per further failure, at most
//     MaxDelay. The owner is slowed by at most MaxDelay, never refused, so
//     a guesser cannot lock an account (OWASP Authentication Cheat Sheet,
//     "Account Lockout": throttle, do not lock).
//
// Names that match no user are tracked like real ones, so the delay does
// not tell an attacker which accounts exist.
type Limiter struct {
	Burst     int
	Every     time.Duration
	BaseDelay time.Duration
	MaxDelay  time.Duration
	Now       func() time.Time

	mu       sync.Mutex
	sources  map[string]*bucket
	accounts map[string]*bucket
}

// limiterMaxKeys bounds each map under a spray of addresses or names.
const limiterMaxKeys = 10000

// bucket is a token bucket (sources) or a decaying failure count
// (accounts, where tokens counts failures).
type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter returns a limiter with a 250 ms base delay and a 4 s maximum.
func NewLimiter(burst int, every time.Duration) *Limiter {
	return &Limiter{Burst: burst, Every: every, BaseDelay: 250 * time.Millisecond, MaxDelay: 4 * time.Second, Now: time.Now,
		sources: map[string]*bucket{}, accounts: map[string]*bucket{}}
}

// refilled is how much a value changes over d at one unit per Every.
func (l *Limiter) refilled(d time.Duration) float64 {
	if l.Every <= 0 {
		return float64(l.Burst)
	}
	return d.Seconds() / l.Every.Seconds()
}

func (l *Limiter) source(key string, now time.Time) *bucket {
	b, ok := l.sources[key]
	if !ok {
		b = &bucket{tokens: float64(l.Burst), at: now}
		l.sources[key] = b
	}
	b.tokens = min(float64(l.Burst), b.tokens+l.refilled(now.Sub(b.at)))
	b.at = now
	return b
}

func (l *Limiter) account(key string, now time.Time) *bucket {
	b, ok := l.accounts[key]
	if !ok {
		b = &bucket{at: now}
		l.accounts[key] = b
	}
	b.tokens = max(0, b.tokens-l.refilled(now.Sub(b.at)))
	b.at = now
	return b
}

// Allow reports whether source may try to sign in now.
func (l *Limiter) Allow(source string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.source(source, l.Now()).tokens >= 1
}

// Delay returns how long an attempt on account waits before its password is
// checked: zero until the name has Burst recent failures.
func (l *Limiter) Delay(account string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.accounts[account]; !ok {
		return 0
	}
	over := int(l.account(account, l.Now()).tokens) - l.Burst
	if over < 0 {
		return 0
	}
	d := l.BaseDelay
	for range over {
		if d >= l.MaxDelay {
			break
		}
		d *= 2
	}
	return min(d, l.MaxDelay)
}

// Fail records a failed attempt from source, on account when the name was
// well formed (empty otherwise).
func (l *Limiter) Fail(source, account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	b := l.source(source, now)
	b.tokens = max(0, b.tokens-1)
	if account != "" {
		l.account(account, now).tokens++
	}
	l.evict(now)
}

// Retry returns how long source waits until its next attempt is allowed.
func (l *Limiter) Retry(source string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.source(source, l.Now())
	if b.tokens >= 1 || l.Every <= 0 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(l.Every))
}

// evict bounds memory: entries back at rest are dropped first; if a map is
// still full, arbitrary entries go (a spray that large already spreads over
// more sources than the buckets could slow). It empties a full map down to
// three quarters, so its cost is spread over many calls.
func (l *Limiter) evict(now time.Time) {
	if len(l.sources) > limiterMaxKeys {
		for k := range l.sources {
			if l.source(k, now).tokens >= float64(l.Burst) {
				delete(l.sources, k)
			}
		}
		for k := range l.sources {
			if len(l.sources) <= limiterMaxKeys*3/4 {
				break
			}
			delete(l.sources, k)
		}
	}
	if len(l.accounts) > limiterMaxKeys {
		for k := range l.accounts {
			if l.account(k, now).tokens < 1 {
				delete(l.accounts, k)
			}
		}
		for k := range l.accounts {
			if len(l.accounts) <= limiterMaxKeys*3/4 {
				break
			}
			delete(l.accounts, k)
		}
	}
}
