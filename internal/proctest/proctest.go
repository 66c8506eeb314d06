// Package proctest lets tests observe the real child processes of the
// test binary in /proc, rather than a counter of the code under test.
package proctest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Children returns the pids of this process's children whose command name
// is comm (as in /proc/<pid>/stat, at most 15 bytes).
func Children(comm string) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := strconv.Itoa(os.Getpid())
	var out []int
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...
		open, close := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(string(raw[close+1:]))
		if string(raw[open+1:close]) == comm && len(f) > 1 && f[1] == me {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(raw[:open])))
			out = append(out, pid)
		}
	}
	return out
}
