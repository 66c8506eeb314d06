package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (proc(5)); it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPUTime returns the user plus system CPU time the process pid has used,
// from fields 14 and 15 of /proc/<pid>/stat (proc(5)).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time of %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces; fields resume after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu time of %d: malformed stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu time of %d: short stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read cpu time of %d: malformed stat", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// Memory is a process's resident set from /proc/<pid>/status.
type Memory struct {
	// RSSMiB is VmRSS, the current resident set.
	RSSMiB float64 `json:"rss_mib"`
	// HWMMiB is VmHWM, the peak resident set since the process started.
	HWMMiB float64 `json:"hwm_mib"`
}

// ReadMemory returns VmRSS and VmHWM of pid.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	var m Memory
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			m.RSSMiB = kb / 1024
		case "VmHWM:":
			m.HWMMiB = kb / 1024
		}
	}
	return m, nil
}

// CPUMeter measures the CPU share of a process over a window.
type CPUMeter struct {
	pid   int
	cpu0  time.Duration
	wall0 time.Time
}

// StartCPU opens a measurement window on pid.
func StartCPU(pid int) (*CPUMeter, error) {
	c, err := CPUTime(pid)
	if err != nil {
		return nil, err
	}
	return &CPUMeter{pid: pid, cpu0: c, wall0: time.Now()}, nil
}

// Percent returns the CPU used since StartCPU as a percentage of one core.
func (m *CPUMeter) Percent() (float64, error) {
	c, err := CPUTime(m.pid)
	if err != nil {
		return 0, err
	}
	wall := time.Since(m.wall0)
	if wall <= 0 {
		return 0, nil
	}
	return 100 * float64(c-m.cpu0) / float64(wall), nil
}
