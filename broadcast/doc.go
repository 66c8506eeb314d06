// Package broadcast is loalang's broadcast engine: it turns an announcement
// (stored media, text to speak, prepared Opus packets or live speech) into
// paced MQTT audio frames for every zone it is sent to, enforces the bulletin
// priorities of Circular 39/2020/TT-BTTTT (pre-emption, resumption, queueing),
// collects the speakers' delivery reports, and keeps the kill switch.
//
// The engine depends on the standard library and the wire contract alone;
// the MQTT client, media library, text-to-speech, device directory, durable
// log and hall output are passed in as the small interfaces declared in
// engine.go. The Engine is a facade over three parts with one lock each:
// arbitration (arbiter.go: per-zone priority and pre-emption), the stream
// publisher (stream.go, live.go: play-at times and frames per zone) and
// delivery accounting (delivery.go: the speakers' reports).
// docs/broadcast.md describes the lifecycle, the parts ("Inside the
// engine") and the bandwidth budget; docs/protocol.md specifies the bytes
// on the wire.
package broadcast
