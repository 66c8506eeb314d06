package web

import (
	"errors"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/store"
)

// userView is a user as the API shows it: never the password hash.
type userView struct {
	Username  string    `json:"username"`
	Role      auth.Role `json:"role"`
	Cameras   []string  `json:"cameras,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewOf(u auth.User) userView {
	return userView{Username: u.Username, Role: u.Role, Cameras: u.Cameras, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Login checks a username and password against the store, rate-limited
// per username and per client address, and audits the attempt. It returns
// a new session token.
func (s *Server) Login(r *http.Request, username, password string) (string, auth.Session, error) {
	keys := []string{"user:" + username, "ip:" + clientIP(r)}
	if !s.limiter.Allow(keys...) {
		s.db.AppendAudit(store.Event{Time: s.now(), Actor: username, Action: "login.throttled", Detail: map[string]any{"ip": clientIP(r)}})
		return "", auth.Session{}, auth.ErrRateLimited
	}
	u, err := store.Get[auth.User](s.db, store.Users, username)
	if err != nil || !auth.VerifyPassword(u.PasswordHash, password) {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", auth.Session{}, err
		}
		s.limiter.Fail(keys...)
		s.db.AppendAudit(store.Event{Time: s.now(), Actor: username, Action: "login.failed", Detail: map[string]any{"ip": clientIP(r)}})
		return "", auth.Session{}, auth.ErrBadPassword
	}
	tok := auth.RandomSecret(32)
	sess := auth.Session{Username: u.Username, Expires: s.now().Add(s.cfg.TokenTTL), CSRF: auth.RandomSecret(18)}
	err = s.db.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Sessions, auth.TokenKey(tok), sess); err != nil {
			return err
		}
		return tx.AppendAudit(store.Event{Time: s.now(), Actor: u.Username, Action: "login", Detail: map[string]any{"ip": clientIP(r)}})
	})
	if err != nil {
		return "", auth.Session{}, err
	}
	return tok, sess, nil
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
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expires": sess.Expires})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	store.Delete(s.db, store.Sessions, auth.TokenKey(bearer(r)))
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
	if !auth.VerifyPassword(u.PasswordHash, req.Old) {
		writeError(w, r, badRequest("old_password: wrong password"))
		return
	}
	if err := s.saveUser(r, u.Username, func(u *auth.User) error { return setPassword(u, req.New) }, false); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func setPassword(u *auth.User, pw string) error {
	h, err := auth.HashPassword(pw)
	if err != nil {
		return badRequest("password: %v", err)
	}
	u.PasswordHash = h
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

type userRequest struct {
	Username string    `json:"username"`
	Password string    `json:"password"`
	Role     auth.Role `json:"role"`
	Cameras  []string  `json:"cameras"`
}

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
		if err := fn(&u); err != nil {
			return err
		}
		u.UpdatedAt = now
		if err := tx.Put(store.Users, name, u); err != nil {
			return err
		}
		action := "user.update"
		if create {
			action = "user.create"
		}
		return tx.AppendAudit(store.Event{Time: now, Actor: UserFrom(r.Context()).Username, Action: action, Target: name, Detail: map[string]any{"role": u.Role}})
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
			return tx.AppendAudit(store.Event{Time: s.now(), Actor: UserFrom(r.Context()).Username, Action: "user.delete", Target: name})
		})
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
