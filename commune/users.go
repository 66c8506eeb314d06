package commune

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/loalang/loalang/auth"
)

// userRoutes mounts the admin's user management and everyone's own
// password change. A password change, a role change or a deletion bumps
// or removes the user, which ends their sessions (auth.Session.ValidFor
// compares the user's SessionEpoch).
func (s *Server) userRoutes() {
	s.Handle("PATCH /api/v1/commune/users/{name}", []string{RoleAdmin}, http.HandlerFunc(s.updateUser))
	s.Handle("DELETE /api/v1/commune/users/{name}", []string{RoleAdmin}, http.HandlerFunc(s.deleteUser))
	s.Handle("POST /api/v1/commune/me/password", Roles, http.HandlerFunc(s.changeOwnPassword))
}

var errLastAdmin = errors.New("the last admin cannot be removed or demoted")

// otherAdmins counts the admins other than name.
func otherAdmins(tx *bolt.Tx, name string) (int, error) {
	us, err := list[auth.User](tx, bUsers, "")
	n := 0
	for _, u := range us {
		if u.Role == auth.RoleAdmin && u.Username != name {
			n++
		}
	}
	return n, err
}

// updateUser changes a user's role and/or resets their password (admin).
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) {
	actor, _ := UserFrom(r.Context())
	var in struct{ Role, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil || (in.Role == "" && in.Password == "") {
		httpError(w, http.StatusBadRequest, "body must be JSON {role} and/or {password}")
		return
	}
	if in.Role != "" && !slices.Contains(Roles, in.Role) {
		httpError(w, http.StatusBadRequest, "role must be one of "+strings.Join(Roles, ", "))
		return
	}
	var hash string
	if in.Password != "" {
		var err error
		if hash, err = auth.HashPassword(in.Password); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	var u auth.User
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bUsers, r.PathValue("name"), &u); err != nil {
			return errNotFound
		}
		now := s.now().UTC()
		detail := map[string]any{}
		if in.Role != "" && auth.Role(in.Role) != u.Role {
			if u.Role == auth.RoleAdmin {
				if n, err := otherAdmins(tx, u.Username); err != nil {
					return err
				} else if n == 0 {
					return errLastAdmin
				}
			}
			detail["role"], detail["was"] = in.Role, u.Role
			u.Role = auth.Role(in.Role)
			u.SessionEpoch++
		}
		if hash != "" {
			u.PasswordHash = hash
			u.SessionEpoch++
			detail["password"] = "reset"
		}
		u.UpdatedAt = now
		if err := put(tx, bUsers, u.Username, u); err != nil {
			return err
		}
		return audit(tx, AuditEntry{Time: now, Actor: actor.Username, Action: "user.update", Target: u.Username, Detail: detail})
	})
	s.userResult(w, err, u)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	actor, _ := UserFrom(r.Context())
	var u auth.User
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bUsers, r.PathValue("name"), &u); err != nil {
			return errNotFound
		}
		if u.Role == auth.RoleAdmin {
			if n, err := otherAdmins(tx, u.Username); err != nil {
				return err
			} else if n == 0 {
				return errLastAdmin
			}
		}
		if err := tx.Bucket(bUsers).Delete([]byte(u.Username)); err != nil {
			return err
		}
		return audit(tx, AuditEntry{Time: s.now().UTC(), Actor: actor.Username, Action: "user.delete", Target: u.Username, Detail: map[string]any{"role": u.Role}})
	})
	if err == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.userResult(w, err, u)
}

// changeOwnPassword changes the signed-in user's password given the
// current one; their sessions, this one included, end.
func (s *Server) changeOwnPassword(w http.ResponseWriter, r *http.Request) {
	me, _ := UserFrom(r.Context())
	var in struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		httpError(w, http.StatusBadRequest, "body must be JSON {current, new}")
		return
	}
	if !auth.VerifyPassword(me.PasswordHash, in.Current) {
		httpError(w, http.StatusForbidden, "the current password is wrong")
		return
	}
	hash, err := auth.HashPassword(in.New)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	var u auth.User
	err = s.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := get(tx, bUsers, me.Username, &u); err != nil {
			return errNotFound
		}
		u.PasswordHash, u.UpdatedAt = hash, s.now().UTC()
		u.SessionEpoch++
		if err := put(tx, bUsers, u.Username, u); err != nil {
			return err
		}
		return audit(tx, AuditEntry{Time: u.UpdatedAt, Actor: u.Username, Action: "user.password", Target: u.Username})
	})
	s.userResult(w, err, u)
}

func (s *Server) userResult(w http.ResponseWriter, err error, u auth.User) {
	switch {
	case errors.Is(err, errNotFound):
		httpError(w, http.StatusNotFound, "no such user")
	case errors.Is(err, errLastAdmin):
		httpError(w, http.StatusConflict, err.Error())
	case err != nil:
		httpError(w, http.StatusInternalServerError, "could not store the user")
	default:
		writeJSON(w, http.StatusOK, userView(u))
	}
}
