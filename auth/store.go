package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/loalang/loalang/audit"
)

// Store is the persistence port of Users and Sessions: users and session
// records, read and changed in transactions. The adapter (store.AuthStore)
// commits a transaction's changes and its audit entries together or not at
// all, so no change is ever acknowledged without its entry, nor audited
// without having happened.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(tx Tx) error) error
	// Update runs fn in one durable read-write transaction: everything fn
	// wrote, audit entries included, commits when it returns nil.
	Update(ctx context.Context, fn func(tx Tx) error) error
}

// Tx is one transaction of a Store.
type Tx interface {
	// User returns the named user; a missing one matches ErrNotFound.
	User(name string) (User, error)
	// Users returns every user, ordered by name.
	Users() ([]User, error)
	// PutUser creates or replaces u.
	PutUser(u User) error
	// DeleteUser removes a user; a missing one matches ErrNotFound.
	DeleteUser(name string) error
	// Session returns the session stored under key (TokenKey); a missing
	// one matches ErrNotFound.
	Session(key string) (Session, error)
	// PutSession stores s under key.
	PutSession(key string, s Session) error
	// DeleteSession removes a session record; a missing one is no error.
	DeleteSession(key string) error
	// EachSession calls fn with every session record in key order, until
	// fn returns an error. A record that does not decode is passed with
	// its decoding error (and a zero Session), so the caller decides.
	EachSession(fn func(key string, s Session, decodeErr error) error) error
	// Audit appends entries to the audit trail in this transaction.
	Audit(entries ...audit.Entry) error
}

// Errors of the services. Validation errors are *FieldError, which match
// ErrInvalid and name the field.
var (
	// ErrNotFound means the user (or session) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a user of that name exists already.
	ErrExists = errors.New("already exists")
	// ErrInvalid is matched by every *FieldError.
	ErrInvalid = errors.New("invalid")
	// ErrNoSession means a token signs nobody in: unknown, expired, of a
	// deleted user, or from before the user's last password change.
	ErrNoSession = errors.New("no valid session")
)

// FieldError is a request the rules refuse, naming the field: its message
// is "<field>: <reason>". It matches ErrInvalid, and the wrapped reason
// (ErrWeakPassword, ErrBadUsername…) where there is one.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e *FieldError) Unwrap() error { return e.Err }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldError(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}
