// Package hall drives the village hall's own loudspeaker chain: the sound
// card that feeds the amplifier (through oto and ALSA) and the RS-485 Modbus
// RTU relay board that powers the amplifier and switches the wired zone
// lines.
//
// The broadcast engine hands it the same wire.StreamControl and wire.Frame
// values the IP speakers receive, so the sink plays each 20 ms Opus packet
// at its play-at time on the daemon's clock, in step with the IP speakers.
// The relay board follows the sequence amplifier on, warm-up, zones on,
// audio, tail, zones off, idle delay, amplifier off, verifying every write
// by reading the coils back. A failing board raises an alarm and is reopened
// with backoff; it never holds up the IP part of a broadcast. See
// docs/hall.md.
package hall
