package health

import (
	"errors"
	"fmt"
)

// errStopped is the reason recorded when a supervised service returns nil
// before its context ends: it stopped without saying why.
var errStopped = errors.New("stopped unexpectedly")

// PanicError is a panic recovered from a supervised service, so that one
// bad record cannot kill the process.
type PanicError struct{ Value any }

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }
