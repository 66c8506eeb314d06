package web

import (
	"context"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"net/http"
	"slices"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web/api"
)

// userView is a user as the API shows it: never the password hash.
type userView = api.User

func viewOf(u auth.User) userView {
	return userView{Username: u.Username, Role: u.Role, Cameras: u.Cameras, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// Login checks a username and password against the store and audits the
// attempt; it returns a new session token. Guessing is throttled by source
// and slowed per account (auth.Limiter), a malformed username is refused
// before anything about it is stored, and an unknown user costs the same
// password check as a known one (auth.DummyHash).
func (s *Server) Login(r *http.Request, username, password string) (string, auth.Session, error) {
	src, ip := sourceKey(r), clientIP(r)
	if !s.limiter.Allow(src) {
		s.logins.WithLabelValues("throttled").Inc()
		if ev := s.throttleLog.add(s.now(), src, ip, username); len(ev) > 0 {
			if err := s.db.AppendAudit(ev...); err != nil {
				s.log.Error("audit failed", "action", "login.throttled", "err", err)
			}
		}
		return "", auth.Session{}, auth.ErrRateLimited
	}
	fail := func(actor string, detail map[string]any) (string, auth.Session, error) {
		s.logins.WithLabelValues("failed").Inc()
		s.limiter.Fail(src, actor)
		detail["ip"] = ip
		if err := s.db.AppendAudit(store.Event{Time: s.now(), Actor: actor, Action: audit.LoginFailed, Detail: detail}); err != nil {
			s.log.Error("audit failed", "action", "login.failed", "err", err)
		}
		return "", auth.Session{}, auth.ErrBadPassword
	}
	if auth.ValidUsername(username) != nil {
		// The rule is public, so refusing at once leaks nothing; the name
		// itself is never stored, only its length.
		return fail("", map[string]any{"malformed_username": true, "username_bytes": len(username)})
	}
	if d := s.limiter.Delay(username); d > 0 {
		if err := s.wait(r.Context(), d); err != nil {
			return "", auth.Session{}, fmt.Errorf("login: %w", err)
		}
	}
	u, err := store.Get[auth.User](s.db, store.Users, username)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, store.ErrNotFound):
		hash = auth.DummyHash()
	case err != nil:
		return "", auth.Session{}, err
	}
	select {
	case s.hashSlots <- struct{}{}:
	case <-r.Context().Done():
		return "", auth.Session{}, fmt.Errorf("login: %w", r.Context().Err())
	}
	ok := s.verify(hash, password)
	<-s.hashSlots
	if !ok || err != nil {
		return fail(username, map[string]any{})
	}
	s.logins.WithLabelValues("ok").Inc()
	tok := auth.RandomSecret(32)
	sess := auth.Session{Username: u.Username, Expires: s.now().Add(s.cfg.TokenTTL), CSRF: auth.RandomSecret(18), Epoch: u.SessionEpoch}
	err = s.db.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Sessions, auth.TokenKey(tok), sess); err != nil {
			return err
		}
		return tx.AppendAudit(store.Event{Time: s.now(), Actor: u.Username, Action: audit.Login, Detail: map[string]any{"ip": ip}})
	})
	if err != nil {
		return "", auth.Session{}, err
	}
	return tok, sess, nil
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

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	tok, sess, err := s.Login(r, req.Username, req.Password)
	if errors.Is(err, auth.ErrRateLimited) {
		w.Header().Set("Retry-After", s.retryAfter(r))
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expires": sess.Expires})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	store.Delete(s.db, store.Sessions, sessionKeyFrom(r.Context()))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, viewOf(UserFrom(r.Context())))
}

func (s *Server) handleOwnPassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Old string `json:"old_password"`
		New string `json:"new_password"`
	}
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	u := UserFrom(r.Context())
	// A stolen session must not guess the old password faster than a
	// sign-in could: the same limiter applies.
	src := sourceKey(r)
	if !s.limiter.Allow(src) {
		w.Header().Set("Retry-After", s.retryAfter(r))
		writeError(w, r, auth.ErrRateLimited)
		return
	}
	if !s.verify(u.PasswordHash, req.Old) {
		s.limiter.Fail(src, u.Username)
		s.audit(r, "user.password.failed", u.Username, map[string]any{"ip": clientIP(r)})
		writeError(w, r, badRequest("old_password: wrong password"))
		return
	}
	if err := s.saveUser(r, u.Username, func(u *auth.User) error { return setPassword(u, req.New) }, false); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// setPassword sets a new password and ends every session that began
// before it (auth.Session.ValidFor); saveUser keeps the caller's own.
func setPassword(u *auth.User, pw string) error {
	h, err := auth.HashPassword(pw)
	if err != nil {
		return badRequest("password: %v", err)
	}
	u.PasswordHash = h
	u.SessionEpoch++
	return nil
}

func (s *Server) handleUsers(w http.ResponseWriter, r *http.Request) {
	users, err := store.List[auth.User](s.db, store.Users, "")
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := make([]userView, 0, len(users))
	for _, u := range users {
		out = append(out, viewOf(u))
	}
	writeJSON(w, http.StatusOK, out)
}

type userRequest = api.UserRequest

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	var req userRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if err := auth.ValidUsername(req.Username); err != nil {
		writeError(w, r, badRequest("username: %v", err))
		return
	}
	if !req.Role.Valid() {
		writeError(w, r, badRequest("role: %q is not admin, head or police", req.Role))
		return
	}
	err := s.saveUser(r, req.Username, func(u *auth.User) error {
		u.Role, u.Cameras = req.Role, req.Cameras
		return setPassword(u, req.Password)
	}, true)
	if err != nil {
		writeError(w, r, err)
		return
	}
	u, _ := store.Get[auth.User](s.db, store.Users, req.Username)
	writeJSON(w, http.StatusCreated, viewOf(u))
}

// saveUser applies fn to a user (a new one when create is set) and writes
// it with its audit entry in one durable transaction: the response is sent
// only after the commit.
func (s *Server) saveUser(r *http.Request, name string, fn func(u *auth.User) error, create bool) error {
	now := s.now()
	return s.db.Update(func(tx *store.Tx) error {
		var u auth.User
		err := tx.Get(store.Users, name, &u)
		switch {
		case create && err == nil:
			return errConflict
		case create:
			u = auth.User{Username: name, CreatedAt: now}
		case err != nil:
			return err
		}
		epoch := u.SessionEpoch
		if err := fn(&u); err != nil {
			return err
		}
		if err := auth.ValidCameras(u.Cameras); err != nil {
			return badRequest("cameras: %v", err)
		}
		u.UpdatedAt = now
		if err := tx.Put(store.Users, name, u); err != nil {
			return err
		}
		// A password change ends the user's other sessions; the one making
		// the change stays signed in (its own change, or an admin resetting
		// their own password).
		if key := sessionKeyFrom(r.Context()); u.SessionEpoch != epoch && key != "" && UserFrom(r.Context()).Username == name {
			var cur auth.Session
			if err := tx.Get(store.Sessions, key, &cur); err == nil {
				cur.Epoch = u.SessionEpoch
				if err := tx.Put(store.Sessions, key, cur); err != nil {
					return err
				}
			}
		}
		action := audit.UserUpdate
		if create {
			action = audit.UserCreate
		}
		detail := map[string]any{"role": u.Role}
		if u.SessionEpoch != epoch {
			detail["password_changed"] = true
		}
		return tx.AppendAudit(store.Event{Time: now, Actor: UserFrom(r.Context()).Username, Action: action, Target: name, Detail: detail})
	})
}

func (s *Server) handleUpdateUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password *string    `json:"password"`
		Role     *auth.Role `json:"role"`
		Cameras  *[]string  `json:"cameras"`
	}
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	name := r.PathValue("username")
	err := s.saveUser(r, name, func(u *auth.User) error {
		if req.Role != nil {
			if !req.Role.Valid() {
				return badRequest("role: %q is not admin, head or police", *req.Role)
			}
			if u.Role == auth.RoleAdmin && *req.Role != auth.RoleAdmin {
				if err := s.keepAnAdmin(name); err != nil {
					return err
				}
			}
			u.Role = *req.Role
		}
		if req.Cameras != nil {
			u.Cameras = slices.Clone(*req.Cameras)
		}
		if req.Password != nil {
			return setPassword(u, *req.Password)
		}
		return nil
	}, false)
	if err != nil {
		writeError(w, r, err)
		return
	}
	u, _ := store.Get[auth.User](s.db, store.Users, name)
	writeJSON(w, http.StatusOK, viewOf(u))
}

// keepAnAdmin refuses to remove the last admin, which would lock everyone
// out of user management.
func (s *Server) keepAnAdmin(leaving string) error {
	users, err := store.List[auth.User](s.db, store.Users, "")
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Role == auth.RoleAdmin && u.Username != leaving {
			return nil
		}
	}
	return badRequest("username: %s is the last admin", leaving)
}

func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("username")
	u, err := store.Get[auth.User](s.db, store.Users, name)
	if err == nil && u.Role == auth.RoleAdmin {
		err = s.keepAnAdmin(name)
	}
	if err == nil {
		err = s.db.Update(func(tx *store.Tx) error {
			if err := tx.Delete(store.Users, name); err != nil {
				return err
			}
			// End the user's sessions with the account.
			var stale []string
			tx.Each(store.Sessions, "", func(key string, raw []byte) error {
				var sess auth.Session
				if jsonUnmarshal(raw, &sess) == nil && sess.Username == name {
					stale = append(stale, key)
				}
				return nil
			})
			for _, k := range stale {
				tx.Delete(store.Sessions, k)
			}
			return tx.AppendAudit(store.Event{Time: s.now(), Actor: UserFrom(r.Context()).Username, Action: audit.UserDelete, Target: name})
		})
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// PurgeSessions deletes the session records that can no longer sign in:
// expired, of a deleted user, or from before a password change. Revocation
// does not depend on it (Session.ValidFor); it only keeps the store small.
// The daemon runs it with the audit retention.
func (s *Server) PurgeSessions() (int, error) {
	now := s.now()
	n := 0
	err := s.db.Update(func(tx *store.Tx) error {
		var stale []string
		users := map[string]*auth.User{}
		err := tx.Each(store.Sessions, "", func(key string, raw []byte) error {
			var sess auth.Session
			if jsonUnmarshal(raw, &sess) != nil {
				stale = append(stale, key)
				return nil
			}
			u, ok := users[sess.Username]
			if !ok {
				var uu auth.User
				if tx.Get(store.Users, sess.Username, &uu) == nil {
					u = &uu
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
			if err := tx.Delete(store.Sessions, k); err != nil {
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
