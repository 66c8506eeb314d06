package media

import "errors"

// Sentinel errors returned (wrapped, with detail for a human) by the media
// pipeline. Compare them with errors.Is. The HTTP layer maps ErrTooLarge to
// 413, ErrUnsupported to 415 and the other input errors to 422.
var (
	// ErrEmpty means the upload or the text to speak was empty.
	ErrEmpty = errors.New("media: empty input")
	// ErrTooLarge means the upload is bigger than the configured MaxBytes.
	ErrTooLarge = errors.New("media: input too large")
	// ErrTooLong means the audio (or text) is longer than the configured limit.
	ErrTooLong = errors.New("media: input too long")
	// ErrUnsupported means the input is a format or variant loalang does not
	// decode faithfully, so it refuses it rather than broadcast noise.
	ErrUnsupported = errors.New("media: unsupported format")
	// ErrCorrupt means the input claims a supported format but is damaged
	// or truncated.
	ErrCorrupt = errors.New("media: corrupt input")
	// ErrSilent means the decoded audio holds no signal above the
	// BS.1770-4 absolute gate (-70 LKFS), so broadcasting it would be useless.
	ErrSilent = errors.New("media: audio is silent")
	// ErrTTSUnavailable means text-to-speech is not possible on this machine
	// (espeak-ng is not installed).
	ErrTTSUnavailable = errors.New("media: text-to-speech unavailable")
	// ErrBusy means the work queue (uploads being imported, text waiting
	// for espeak-ng) is full; the request may be retried shortly. The HTTP
	// layer maps it to 503 with Retry-After.
	ErrBusy = errors.New("media: busy, try again shortly")
	// ErrNotFound means no stored clip has the requested ID.
	ErrNotFound = errors.New("media: clip not found")
)

// Language errors; the HTTP layer maps both to 400.
var (
	// ErrUnknownLanguage means a language tag is not one of Languages.
	ErrUnknownLanguage = errors.New("media: unknown language")
	// ErrNoVoice means text-to-speech cannot speak the language: espeak-ng
	// has no voice for it.
	ErrNoVoice = errors.New("media: no text-to-speech voice for the language")
)
