package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/auth"
)

// AuthStore implements auth.Store over the Users and Sessions buckets:
// users as JSON under their name, sessions as JSON under their token's
// hash (auth.TokenKey). A transaction's changes and its audit entries
// commit together (DB.Update).
type AuthStore struct{ db *DB }

// NewAuthStore returns the users' and sessions' store over db.
func NewAuthStore(db *DB) *AuthStore { return &AuthStore{db: db} }

// View implements auth.Store.
func (s *AuthStore) View(ctx context.Context, fn func(tx auth.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *Tx) error { return fn(authTx{tx}) })
}

// Update implements auth.Store.
func (s *AuthStore) Update(ctx context.Context, fn func(tx auth.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *Tx) error { return fn(authTx{tx}) })
}

// authTx implements auth.Tx.
type authTx struct{ tx *Tx }

// authNotFound turns the store's ErrNotFound into auth's, with the same
// message ("get users/bob: not found").
func authNotFound(err error, op, bucket, key string) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s %s/%s: %w", op, bucket, key, auth.ErrNotFound)
	}
	return err
}

func (t authTx) User(name string) (auth.User, error) {
	var u auth.User
	return u, authNotFound(t.tx.Get(Users, name, &u), "get", Users, name)
}

func (t authTx) Users() ([]auth.User, error) {
	var out []auth.User
	err := t.tx.Each(Users, "", func(key string, raw []byte) error {
		var u auth.User
		if err := json.Unmarshal(raw, &u); err != nil {
			return fmt.Errorf("list %s/%s: %w", Users, key, undecodable(err))
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

func (t authTx) PutUser(u auth.User) error { return t.tx.Put(Users, u.Username, u) }

func (t authTx) DeleteUser(name string) error {
	return authNotFound(t.tx.Delete(Users, name), "delete", Users, name)
}

func (t authTx) Session(key string) (auth.Session, error) {
	var s auth.Session
	return s, authNotFound(t.tx.Get(Sessions, key, &s), "get", Sessions, key)
}

func (t authTx) PutSession(key string, s auth.Session) error { return t.tx.Put(Sessions, key, s) }

func (t authTx) DeleteSession(key string) error {
	if err := t.tx.Delete(Sessions, key); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

func (t authTx) EachSession(fn func(key string, s auth.Session, decodeErr error) error) error {
	return t.tx.Each(Sessions, "", func(key string, raw []byte) error {
		var s auth.Session
		if err := json.Unmarshal(raw, &s); err != nil {
			return fn(key, auth.Session{}, undecodable(err))
		}
		return fn(key, s, nil)
	})
}

func (t authTx) Audit(entries ...audit.Entry) error { return t.tx.AppendAudit(entries...) }
