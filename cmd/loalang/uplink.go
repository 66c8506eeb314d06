package main

import (
	"io"

	"github.com/loalang/loalang/uplink"
)

// uplinkCommand runs `loalang uplink keygen|sign` (uplink.Main): the
// upstream operator's tools, which need no server, so they run before the
// API client is set up. It reports whether args named it.
func uplinkCommand(args []string, stdout, stderr io.Writer) (bool, error) {
	if len(args) == 0 || args[0] != "uplink" {
		return false, nil
	}
	return true, uplink.Main(args[1:], stdout, stderr)
}
