package web

import (
	"errors"
	"net/http"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/web/api"
)

// The accounts API: decode, call auth.Users or auth.Sessions, encode. The
// rules (last admin, password policy, sessions ended by a password change
// or a deletion) are the services'.

// userView is a user as the API shows it: never the password hash.
type userView = api.User

func viewOf(u auth.User) userView {
	return userView{Username: u.Username, Role: u.Role, Cameras: u.Cameras, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// actor is the signed-in caller of r, as the services record it.
func actor(r *http.Request) auth.Actor {
	return auth.Actor{Username: UserFrom(r.Context()).Username, SessionKey: sessionKeyFrom(r.Context())}
}

// attempt is a sign-in attempt from r.
func attempt(r *http.Request, username, password string) auth.Attempt {
	return auth.Attempt{Source: sourceKey(r), IP: clientIP(r), Username: username, Password: password}
}

// Login signs in with a username and password (auth.Sessions.Login) and
// counts the attempt by result; it returns a new session token.
func (s *Server) Login(r *http.Request, username, password string) (string, auth.Session, error) {
	tok, sess, err := s.sessions.Login(r.Context(), attempt(r, username, password))
	switch {
	case err == nil:
		s.logins.WithLabelValues("ok").Inc()
	case errors.Is(err, auth.ErrRateLimited):
		s.logins.WithLabelValues("throttled").Inc()
	case errors.Is(err, auth.ErrBadPassword):
		s.logins.WithLabelValues("failed").Inc()
	}
	return tok, sess, err
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
	if err := s.sessions.Revoke(r.Context(), sessionKeyFrom(r.Context())); err != nil {
		writeError(w, r, err)
		return
	}
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
	if err := s.sessions.Reauthenticate(r.Context(), u, attempt(r, u.Username, req.Old)); err != nil {
		if errors.Is(err, auth.ErrRateLimited) {
			w.Header().Set("Retry-After", s.retryAfter(r))
		}
		writeError(w, r, err)
		return
	}
	if _, err := s.users.Update(r.Context(), actor(r), u.Username, auth.UserChange{Password: &req.New}); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.users.List(r.Context())
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
	u, err := s.users.Create(r.Context(), actor(r), auth.NewUser{Username: req.Username, Role: req.Role, Password: req.Password, Cameras: req.Cameras})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, viewOf(u))
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
	u, err := s.users.Update(r.Context(), actor(r), r.PathValue("username"), auth.UserChange{Password: req.Password, Role: req.Role, Cameras: req.Cameras})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(u))
}

func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	if err := s.users.Delete(r.Context(), actor(r), r.PathValue("username")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
