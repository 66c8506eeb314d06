// Package broadcast is loalang's broadcast engine: it turns an announcement
// (stored media, text to speak, prepared Opus packets or live speech) into
// paced MQTT audio frames for every zone it is sent to, enforces the bulletin
// priorities of Circular 39/2020/TT-BTTTT (pre-emption, resumption, queueing),
// collects the speakers' delivery reports, and keeps the kill switch.
//
// The engine depends on the standard library and the wire contract alone;
// the MQTT client, media library, text-to-speech, device directory, durable
// log and hall output are passed in as the small interfaces declared in
// engine.go. docs/broadcast.md describes the lifecycle and the bandwidth
// budget; docs/protocol.md specifies the bytes on the wire.
package broadcast
