// Package wire is the MQTT contract between loalangd and the devices in the field:
// topic names, JSON control payloads and the binary audio frame. It is the only
// package firmware-sim shares with the daemon, so it depends on the standard
// library alone. docs/protocol.md specifies every byte; golden files under
// testdata pin them.
package wire
