package store

import "errors"

var (
	// ErrNotFound means the key does not exist. Its NotFound method lets
	// adapters that must not import the store (web) recognise it.
	ErrNotFound error = notFoundError{}
	// ErrLocked means another process holds the store file: bbolt's file
	// lock did not come free within the lock timeout.
	ErrLocked = errors.New("store is locked by another process (is another loalangd running on this data dir?)")
	// ErrSchema means the file was written by a newer build.
	ErrSchema = errors.New("unsupported schema")
	// ErrCorrupt means the file failed the integrity check or bbolt
	// panicked reading it; *CorruptError says what was found.
	ErrCorrupt = errors.New("store file is damaged")
	// ErrEmpty means the store file exists but has no bytes.
	ErrEmpty = errors.New("store file is empty")
	// ErrNoSpace means a write failed because the data disk is full
	// (ENOSPC or EDQUOT). The transaction was rolled back; retrying once
	// space is free succeeds.
	ErrNoSpace error = noSpaceError{}
)

// notFoundError and noSpaceError are sentinels that also say their
// condition by method, so that an adapter which must not import the store
// (web) can test for it through errors.As with a one-method interface.
type (
	notFoundError struct{}
	noSpaceError  struct{}
)

func (notFoundError) Error() string { return "not found" }

// NotFound reports that the error means a missing key.
func (notFoundError) NotFound() bool { return true }

func (noSpaceError) Error() string { return "no space left on the data disk" }

// NoSpace reports that the error means the data disk is full.
func (noSpaceError) NoSpace() bool { return true }

// Audit trail alarms (AuditStatus.Problem).
var (
	// ErrAuditNearFull means the audit trail is close to audit.max_bytes.
	ErrAuditNearFull = errors.New("audit log near its size bound")
	// ErrAuditFull means the audit trail is over audit.max_bytes and holds
	// only entries it must keep.
	ErrAuditFull = errors.New("audit log over its size bound")
)
