package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/loalang/loalang/audit"
)

// Sessions is the sign-in service. It owns these rules:
//
//   - guessing is throttled by source and slowed per account, never
//     locked (Limiter); a throttled attempt is refused before any password
//     is checked, and its audit is aggregated per source and minute
//     (throttleLog), so a flood grows the audit trail by a bounded amount;
//   - a malformed username is refused before anything about it is stored
//     (only its length is audited);
//   - an unknown user costs the same password check as a known one
//     (DummyHash), so response times do not tell which names exist;
//   - at most MaxChecks sign-in password checks wait or run at once (each
//     argon2id check holds 64 MiB; HashPassword's slot runs one at a time);
//   - a session is a random token stored only as its SHA-256 (TokenKey),
//     valid until its expiry and only while the user's password is
//     unchanged (Session.ValidFor);
//   - every sign-in, failure, throttling and sign-out is audited; a
//     session and its login entry commit in one transaction.
type Sessions struct {
	store Store
	cfg   SessionsConfig
	log   *slog.Logger
	// Limiter throttles failed sign-ins and re-authentications.
	Limiter  *Limiter
	throttle throttleLog
	checks   chan struct{}

	// Now is the clock of expiries and audit entries; Verify checks a
	// password against a hash; Wait sleeps for the limiter's per-account
	// delay. All three are seams for tests.
	Now    func() time.Time
	Verify func(hash, password string) bool
	Wait   func(ctx context.Context, d time.Duration) error
}

// SessionsConfig holds the sign-in settings.
type SessionsConfig struct {
	// TTL is how long a session lasts.
	TTL time.Duration
	// LoginBurst failures are free per source, then one per LoginEvery.
	LoginBurst int
	LoginEvery time.Duration
	// MaxChecks bounds sign-in password checks in flight; 0 means 4.
	MaxChecks int
	// Log receives audit write failures that cannot be returned (the
	// caller is told of the refused sign-in, not of its audit).
	Log *slog.Logger
}

// defaultMaxChecks bounds concurrent sign-in checks: waiting callers are
// slowed, not refused, so many sources at once cannot exhaust memory.
const defaultMaxChecks = 4

// NewSessions returns the service over st.
func NewSessions(st Store, cfg SessionsConfig) *Sessions {
	if cfg.MaxChecks <= 0 {
		cfg.MaxChecks = defaultMaxChecks
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Sessions{store: st, cfg: cfg, log: log.With("component", "auth"),
		Limiter: NewLimiter(cfg.LoginBurst, cfg.LoginEvery),
		checks:  make(chan struct{}, cfg.MaxChecks),
		Now:     time.Now, Verify: VerifyPassword, Wait: sleep,
	}
	s.Limiter.Now = func() time.Time { return s.Now() }
	DummyHash() // made now, so the first unknown user costs no more than a known one
	return s
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Attempt is one sign-in (or re-authentication) attempt.
type Attempt struct {
	// Source is the key the attempt is throttled by (an address, or an
	// IPv6 /64); IP is the address the audit entry shows.
	Source, IP string
	Username   string
	Password   string
}

// appendAudit writes entries in their own transaction; a failure is
// logged, since the caller's answer does not depend on it.
func (s *Sessions) appendAudit(ctx context.Context, entries ...audit.Entry) {
	err := s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error { return tx.Audit(entries...) })
	if err != nil {
		s.log.Error("audit failed", "action", entries[0].Action, "err", err)
	}
}

// Login checks a username and password and returns a new session token.
// A throttled source gets ErrRateLimited, a wrong password or unknown or
// malformed user ErrBadPassword.
func (s *Sessions) Login(ctx context.Context, a Attempt) (string, Session, error) {
	if !s.Limiter.Allow(a.Source) {
		if ev := s.throttle.add(s.Now(), a.Source, a.IP, a.Username); len(ev) > 0 {
			s.appendAudit(ctx, ev...)
		}
		return "", Session{}, ErrRateLimited
	}
	fail := func(actor string, detail map[string]any) (string, Session, error) {
		s.Limiter.Fail(a.Source, actor)
		detail["ip"] = a.IP
		s.appendAudit(ctx, audit.Entry{Time: s.Now(), Actor: actor, Action: audit.LoginFailed, Detail: detail})
		return "", Session{}, ErrBadPassword
	}
	if ValidUsername(a.Username) != nil {
		// The rule is public, so refusing at once leaks nothing; the name
		// itself is never stored, only its length.
		return fail("", map[string]any{"malformed_username": true, "username_bytes": len(a.Username)})
	}
	if d := s.Limiter.Delay(a.Username); d > 0 {
		if err := s.Wait(ctx, d); err != nil {
			return "", Session{}, fmt.Errorf("login: %w", err)
		}
	}
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.User(a.Username)
		return err
	})
	hash := u.PasswordHash
	switch {
	case errors.Is(err, ErrNotFound):
		hash = DummyHash()
	case err != nil:
		return "", Session{}, fmt.Errorf("login: %w", err)
	}
	select {
	case s.checks <- struct{}{}:
	case <-ctx.Done():
		return "", Session{}, fmt.Errorf("login: %w", ctx.Err())
	}
	ok := s.Verify(hash, a.Password)
	<-s.checks
	if !ok || err != nil {
		return fail(a.Username, map[string]any{})
	}
	tok := RandomSecret(32)
	now := s.Now()
	sess := Session{Username: u.Username, Expires: now.Add(s.cfg.TTL), CSRF: RandomSecret(18), Epoch: u.SessionEpoch}
	err = s.store.Update(ctx, func(tx Tx) error {
		if err := tx.PutSession(TokenKey(tok), sess); err != nil {
			return err
		}
		return tx.Audit(audit.Entry{Time: now, Actor: u.Username, Action: audit.Login, Detail: map[string]any{"ip": a.IP}})
	})
	if err != nil {
		return "", Session{}, fmt.Errorf("login: %w", err)
	}
	return tok, sess, nil
}

// errWrongPassword is a re-authentication with the wrong password; it is
// a *FieldError on old_password.
var errWrongPassword = errors.New("wrong password")

// Reauthenticate checks the password of a signed-in user before a
// sensitive change (their own password): a stolen session must not guess
// the old password faster than a sign-in could, so the same limiter
// applies. A wrong password is audited (user.password.failed) and
// returned as a *FieldError on old_password.
func (s *Sessions) Reauthenticate(ctx context.Context, u User, a Attempt) error {
	if !s.Limiter.Allow(a.Source) {
		return ErrRateLimited
	}
	if !s.Verify(u.PasswordHash, a.Password) {
		s.Limiter.Fail(a.Source, u.Username)
		s.appendAudit(ctx, audit.Entry{Time: s.Now(), Actor: u.Username, Action: audit.UserPasswordFailed, Target: u.Username,
			Detail: map[string]any{"ip": a.IP}})
		return &FieldError{Field: "old_password", Err: errWrongPassword}
	}
	return nil
}

// RetryAfter is how long source waits until its next attempt is allowed.
func (s *Sessions) RetryAfter(source string) time.Duration { return s.Limiter.Retry(source) }

// Lookup returns the user and session of a token that still signs in:
// anything else matches ErrNoSession (a store failure wraps it too, so a
// caller never signs in on an error).
func (s *Sessions) Lookup(ctx context.Context, token string) (User, Session, error) {
	var u User
	var sess Session
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		if sess, err = tx.Session(TokenKey(token)); err != nil {
			return err
		}
		u, err = tx.User(sess.Username)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return User{}, Session{}, ErrNoSession
		}
		return User{}, Session{}, fmt.Errorf("%w: %w", ErrNoSession, err)
	}
	if !sess.ValidFor(u, s.Now()) {
		return User{}, Session{}, ErrNoSession
	}
	return u, sess, nil
}

// Revoke deletes the session stored under key (TokenKey); a missing one
// is no error.
func (s *Sessions) Revoke(ctx context.Context, key string) error {
	return s.store.Update(ctx, func(tx Tx) error { return tx.DeleteSession(key) })
}

// Logout revokes the session under key and audits the sign-out of
// username from ip, in one transaction.
func (s *Sessions) Logout(ctx context.Context, key, username, ip string) error {
	return s.store.Update(ctx, func(tx Tx) error {
		if err := tx.DeleteSession(key); err != nil {
			return err
		}
		return tx.Audit(audit.Entry{Time: s.Now(), Actor: username, Action: audit.Logout, Detail: map[string]any{"ip": ip}})
	})
}

// Purge deletes the session records that can no longer sign in: expired,
// of a deleted user, from before a password change, or undecodable.
// Revocation does not depend on it (Session.ValidFor); it only keeps the
// store small. The daemon runs it with the audit retention.
func (s *Sessions) Purge(ctx context.Context) (int, error) {
	now := s.Now()
	n := 0
	err := s.store.Update(ctx, func(tx Tx) error {
		var stale []string
		users := map[string]*User{}
		err := tx.EachSession(func(key string, sess Session, decodeErr error) error {
			if decodeErr != nil {
				stale = append(stale, key)
				return nil
			}
			u, ok := users[sess.Username]
			if !ok {
				uu, err := tx.User(sess.Username)
				switch {
				case err == nil:
					u = &uu
				case !errors.Is(err, ErrNotFound):
					return err
				}
				users[sess.Username] = u
			}
			if u == nil || !sess.ValidFor(*u, now) {
				stale = append(stale, key)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := tx.DeleteSession(k); err != nil {
				return err
			}
		}
		n = len(stale)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purge sessions: %w", err)
	}
	return n, nil
}

// FlushAudit writes the summaries of throttled sign-ins whose window has
// ended (all of them when final is set, at shutdown). The daemon calls it
// every second.
func (s *Sessions) FlushAudit(ctx context.Context, final bool) {
	if ev := s.throttle.flush(s.Now(), final); len(ev) > 0 {
		s.appendAudit(ctx, ev...)
	}
}
