package schedule

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched (errors.Is) by every *FieldError, so callers can map
// any validation failure to one status without inspecting the field.
var ErrInvalid = errors.New("invalid schedule")

// ErrNeverFires reports a schedule whose rule, window or one-shot time leaves
// no occurrence after the reference time. It is wrapped inside a *FieldError.
var ErrNeverFires = errors.New("never fires")

// FieldError names the schedule field that failed validation and why, so the
// web layer can point the village head at the exact input to fix.
type FieldError struct {
	// Field is the JSON name of the offending field, e.g. "rrule",
	// "source.url" or "zones[2]".
	Field string
	// Reason is a short English explanation.
	Reason string
	// Err is an optional underlying cause (a parser error, ErrNeverFires).
	Err error
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("schedule: %s: %s: %v", e.Field, e.Reason, e.Err)
	}
	return fmt.Sprintf("schedule: %s: %s", e.Field, e.Reason)
}

// Unwrap returns the underlying cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field, reason string, err error) *FieldError {
	return &FieldError{Field: field, Reason: reason, Err: err}
}

// ErrNotClaimed is returned by UpdateFiring for a firing never claimed.
var ErrNotClaimed = errors.New("firing not claimed")

// ErrRunning is returned by Run when the scheduler is already running.
var ErrRunning = errors.New("scheduler already running")

// ErrTooFrequent reports a recurring schedule whose occurrences come closer
// together than the configured minimum interval, or closer than one firing
// lasts (it would overlap itself). It is wrapped inside a *FieldError.
var ErrTooFrequent = errors.New("too frequent")

// ErrNotFound reports a schedule that does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict reports a create under a taken id, or a replace of a version
// that is no longer the stored one.
var ErrConflict = errors.New("already exists")

// ErrDamaged reports a stored schedule record that does not decode.
var ErrDamaged = errors.New("schedule record does not decode")

// ErrBadInput is matched (errors.Is) by every *InputError.
var ErrBadInput = errors.New("bad input")

// InputError is input refused before a schedule is validated: an id the
// topic levels cannot carry, a count out of range. Unlike a *FieldError it
// is a malformed request rather than a schedule that cannot run.
type InputError struct{ Msg string }

// Error implements error.
func (e *InputError) Error() string { return e.Msg }

// Is makes every InputError match ErrBadInput.
func (e *InputError) Is(target error) bool { return target == ErrBadInput }
