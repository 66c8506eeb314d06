package speaker

import "errors"

// Sentinel errors returned by the simulated speaker.
var (
	// ErrConfig marks an invalid Config.
	ErrConfig = errors.New("invalid speaker config")
	// ErrRunning is returned by a second concurrent or repeated call to Run.
	ErrRunning = errors.New("speaker already running")
	// ErrScheme is returned for a broker URL whose scheme the simulator
	// cannot dial (only tcp:// and mqtt:// are supported).
	ErrScheme = errors.New("unsupported broker scheme")
)
