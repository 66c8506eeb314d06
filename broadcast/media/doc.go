// Package media is loalang's audio pipeline. An upload (WAV, MP3 or Ogg
// Opus, recognised by content) or text for espeak-ng is decoded to mono
// float32, resampled to 48 kHz with a windowed-sinc filter, normalised to a
// target loudness (ITU-R BS.1770-4, default -16 LUFS) under a true-peak
// ceiling, and encoded once into 20 ms Opus packets (RFC 6716) that are
// stored as content-addressed Ogg Opus files (RFC 7845) and streamed to the
// loudspeakers later. A Transcoder does the same on the fly for relayed MP3
// streams.
//
// The rule throughout is to refuse what cannot be decoded faithfully rather
// than broadcast noise: every input error wraps one of the sentinels in
// errors.go with a message a village head can act on. docs/media.md lists
// the accepted formats and the evidence behind them.
package media
