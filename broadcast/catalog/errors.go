package catalog

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the catalog; compare them with errors.Is. The HTTP
// layer maps ErrInvalid to 400, ErrNotFound to 404 and ErrInUse to 409.
var (
	// ErrInvalid means a library field (name, tags, language) is refused;
	// the message names the field.
	ErrInvalid = errors.New("invalid media field")
	// ErrNotFound means the index has no clip with that ID.
	ErrNotFound = errors.New("media not found")
	// ErrNoFile means the index has the clip but its file is missing.
	ErrNoFile = errors.New("media file missing")
	// ErrInUse means a delete was refused because schedules play the clip.
	ErrInUse = errors.New("media in use")
)

// invalidError is an ErrInvalid whose message names the field.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Is(target error) bool {
	return target == ErrInvalid
}

func invalid(format string, args ...any) error {
	return &invalidError{fmt.Sprintf(format, args...)}
}

// InUseError is a delete refused because schedules play the clip; it
// matches ErrInUse.
type InUseError struct {
	// Schedules name the schedules that play the clip, as “name” (id).
	Schedules []string
}

func (e *InUseError) Error() string {
	return "the recording is used by schedule " + strings.Join(e.Schedules, ", ") + "; change or delete the schedule first"
}

// Is makes an *InUseError match ErrInUse.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }
