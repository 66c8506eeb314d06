package hall

import "errors"

// Sentinel errors. Compare with errors.Is.
var (
	// ErrConfig means the configuration is invalid.
	ErrConfig = errors.New("hall: invalid config")
	// ErrNoSoundDevice means the sound device could not be opened; the sink
	// is then reported failed while the rest keeps working.
	ErrNoSoundDevice = errors.New("hall: no usable sound device")
	// ErrVerify means a coil read back differs from what was just written.
	ErrVerify = errors.New("hall: coil read-back mismatch")
	// ErrClosed means the Hall was closed.
	ErrClosed = errors.New("hall: closed")
)
