package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/loalang/loalang/audit"
)

// Users is the user-administration service. It owns these rules, whoever
// calls it (the web API, the CLI, the uplink):
//
//   - usernames are 1–MaxUsername letters, digits, '.', '-' or '_', roles
//     are admin, head or police, and a police user's camera list is bounded
//     (ValidUsername, Role.Valid, ValidCameras);
//   - passwords are 10–256 characters, stored only as argon2id hashes
//     (HashPassword, RFC 9106), hashed before the transaction so that no
//     write waits for a hash;
//   - the last admin can be neither demoted nor deleted, which would lock
//     everyone out of user management; the check and the change happen in
//     one transaction;
//   - a password change ends every other session of the user at once
//     (User.SessionEpoch, Session.ValidFor) and deletes their records,
//     keeping the session that made the change; deleting a user deletes
//     their sessions;
//   - every change commits with its audit entry (user.create, user.update,
//     user.delete) in one transaction.
type Users struct {
	store Store
	// Now is the clock of CreatedAt, UpdatedAt and the audit entries.
	Now func() time.Time
}

// NewUsers returns the service over st.
func NewUsers(st Store) *Users { return &Users{store: st, Now: time.Now} }

// Actor is who makes a change: the audit entry's actor, and the session
// that made it, which a change of its own password keeps signed in.
type Actor struct {
	Username string
	// SessionKey is the store key (TokenKey) of the caller's session, or
	// "" (the CLI, the bootstrap).
	SessionKey string
}

// NewUser is what creating a user takes.
type NewUser struct {
	Username string
	Role     Role
	Password string
	Cameras  []string
}

// UserChange is a change to a user; nil fields keep their value.
type UserChange struct {
	Password *string
	Role     *Role
	Cameras  *[]string
}

// List returns every user, ordered by name.
func (s *Users) List(ctx context.Context) ([]User, error) {
	var out []User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Users()
		return err
	})
	return out, err
}

// Get returns one user; a missing one matches ErrNotFound.
func (s *Users) Get(ctx context.Context, name string) (User, error) {
	var u User
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.User(name)
		return err
	})
	return u, err
}

func badRole(r Role) error {
	return fieldError("role", "%q is not admin, head or police", r)
}

// prehash hashes a new password outside any transaction; a password the
// policy refuses yields its error, reported where the rules check it.
func prehash(pw *string) (string, error) {
	if pw == nil {
		return "", nil
	}
	return HashPassword(*pw)
}

// Create adds a user; a name in use matches ErrExists.
func (s *Users) Create(ctx context.Context, by Actor, n NewUser) (User, error) {
	if err := ValidUsername(n.Username); err != nil {
		return User{}, &FieldError{Field: "username", Err: err}
	}
	if !n.Role.Valid() {
		return User{}, badRole(n.Role)
	}
	hash, hashErr := prehash(&n.Password)
	var u User
	err := s.store.Update(ctx, func(tx Tx) error {
		_, err := tx.User(n.Username)
		switch {
		case err == nil:
			return ErrExists
		case !errors.Is(err, ErrNotFound):
			return err
		}
		now := s.Now()
		u = User{Username: n.Username, Role: n.Role, Cameras: n.Cameras, CreatedAt: now}
		if err := setHash(&u, hash, hashErr); err != nil {
			return err
		}
		return s.commit(tx, by, u, audit.UserCreate, true, now)
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// setHash sets a password hash made by prehash and bumps the session
// epoch, which ends every session begun before it.
func setHash(u *User, hash string, hashErr error) error {
	if hashErr != nil {
		if errors.Is(hashErr, ErrWeakPassword) {
			return &FieldError{Field: "password", Err: hashErr}
		}
		return hashErr
	}
	u.PasswordHash = hash
	u.SessionEpoch++
	return nil
}

// commit validates and writes u with its audit entry. A password change
// (epoch bumped) keeps the actor's own session and deletes the user's
// other session records.
func (s *Users) commit(tx Tx, by Actor, u User, action audit.Action, passwordChanged bool, now time.Time) error {
	if err := ValidCameras(u.Cameras); err != nil {
		return &FieldError{Field: "cameras", Err: err}
	}
	u.UpdatedAt = now
	if err := tx.PutUser(u); err != nil {
		return err
	}
	detail := map[string]any{"role": u.Role}
	if passwordChanged {
		detail["password_changed"] = true
		if err := endSessions(tx, u, by); err != nil {
			return err
		}
	}
	return tx.Audit(audit.Entry{Time: now, Actor: by.Username, Action: action, Target: u.Username, Detail: detail})
}

// endSessions deletes the session records of u that its new epoch ended,
// and moves the actor's own session, when it is u's, to the new epoch.
func endSessions(tx Tx, u User, by Actor) error {
	var stale []string
	err := tx.EachSession(func(key string, sess Session, decodeErr error) error {
		if decodeErr != nil || sess.Username != u.Username || sess.Epoch == u.SessionEpoch {
			return nil // an undecodable record is Sessions.Purge's
		}
		if key == by.SessionKey && by.Username == u.Username {
			sess.Epoch = u.SessionEpoch
			return tx.PutSession(key, sess)
		}
		stale = append(stale, key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("end sessions of %s: %w", u.Username, err)
	}
	for _, k := range stale {
		if err := tx.DeleteSession(k); err != nil {
			return fmt.Errorf("end sessions of %s: %w", u.Username, err)
		}
	}
	return nil
}

// keepAnAdmin refuses to remove the last admin: leaving is an admin about
// to be demoted or deleted.
func keepAnAdmin(tx Tx, leaving string) error {
	users, err := tx.Users()
	if err != nil {
		return err
	}
	if slices.ContainsFunc(users, func(u User) bool { return u.Role == RoleAdmin && u.Username != leaving }) {
		return nil
	}
	return fieldError("username", "%s is the last admin", leaving)
}

// Update changes a user; a missing one matches ErrNotFound.
func (s *Users) Update(ctx context.Context, by Actor, name string, ch UserChange) (User, error) {
	hash, hashErr := prehash(ch.Password)
	var u User
	err := s.store.Update(ctx, func(tx Tx) error {
		var err error
		if u, err = tx.User(name); err != nil {
			return err
		}
		if ch.Role != nil {
			if !ch.Role.Valid() {
				return badRole(*ch.Role)
			}
			if u.Role == RoleAdmin && *ch.Role != RoleAdmin {
				if err := keepAnAdmin(tx, name); err != nil {
					return err
				}
			}
			u.Role = *ch.Role
		}
		if ch.Cameras != nil {
			u.Cameras = slices.Clone(*ch.Cameras)
		}
		if ch.Password != nil {
			if err := setHash(&u, hash, hashErr); err != nil {
				return err
			}
		}
		return s.commit(tx, by, u, audit.UserUpdate, ch.Password != nil, s.Now())
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// Delete removes a user and their sessions; a missing one matches
// ErrNotFound.
func (s *Users) Delete(ctx context.Context, by Actor, name string) error {
	return s.store.Update(ctx, func(tx Tx) error {
		u, err := tx.User(name)
		if err != nil {
			return err
		}
		if u.Role == RoleAdmin {
			if err := keepAnAdmin(tx, name); err != nil {
				return err
			}
		}
		if err := tx.DeleteUser(name); err != nil {
			return err
		}
		var stale []string
		err = tx.EachSession(func(key string, sess Session, decodeErr error) error {
			if decodeErr == nil && sess.Username == name {
				stale = append(stale, key)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("end sessions of %s: %w", name, err)
		}
		for _, k := range stale {
			if err := tx.DeleteSession(k); err != nil {
				return fmt.Errorf("end sessions of %s: %w", name, err)
			}
		}
		return tx.Audit(audit.Entry{Time: s.Now(), Actor: by.Username, Action: audit.UserDelete, Target: name})
	})
}

// BootstrapAdmin is the name of the first admin.
const BootstrapAdmin = "admin"

// Bootstrap creates the first admin, BootstrapAdmin, with a random
// password, when there are no users; there is no default password
// anywhere. keep is handed the password before the user is committed (the
// daemon writes it to a file only the operator can read); if it fails,
// nothing is created. It reports whether it created the admin.
func (s *Users) Bootstrap(ctx context.Context, secretBytes int, keep func(password string) error) (bool, error) {
	users, err := s.List(ctx)
	if err != nil || len(users) > 0 {
		return false, err
	}
	pw := RandomSecret(secretBytes)
	hash, err := HashPassword(pw)
	if err != nil {
		return false, err
	}
	if err := keep(pw); err != nil {
		return false, err
	}
	created := false
	err = s.store.Update(ctx, func(tx Tx) error {
		if users, err := tx.Users(); err != nil || len(users) > 0 {
			return err // created meanwhile by another caller
		}
		now := s.Now()
		u := User{Username: BootstrapAdmin, Role: RoleAdmin, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
		if err := tx.PutUser(u); err != nil {
			return err
		}
		created = true
		return tx.Audit(audit.Entry{Time: now, Actor: "system", Action: audit.UserCreate, Target: u.Username,
			Detail: map[string]any{"role": "admin", "initial": true}})
	})
	return created && err == nil, err
}
