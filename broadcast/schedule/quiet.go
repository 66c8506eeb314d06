package schedule

import (
	"fmt"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// QuietHours is a nightly window in which routine content is not played.
// Start and End are "HH:MM" wall-clock times in TimeZone; a window whose End
// is not after its Start wraps past midnight ("22:00"–"05:00"). Start is
// inclusive and End exclusive.
type QuietHours struct {
	Start    string `json:"start"`
	End      string `json:"end"`
	TimeZone string `json:"time_zone,omitempty"`
}

type quietWindow struct {
	start, end int // minutes after midnight
	loc        *time.Location
}

// compile validates the window.
func (q *QuietHours) compile() (*quietWindow, error) {
	start, err := parseHHMM(q.Start)
	if err != nil {
		return nil, fmt.Errorf("quiet hours start: %w", err)
	}
	end, err := parseHHMM(q.End)
	if err != nil {
		return nil, fmt.Errorf("quiet hours end: %w", err)
	}
	name := q.TimeZone
	if name == "" {
		name = DefaultTimeZone
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("quiet hours time zone: %w", err)
	}
	return &quietWindow{start: start, end: end, loc: loc}, nil
}

// Validate checks the window's times and zone.
func (q *QuietHours) Validate() error {
	_, err := q.compile()
	return err
}

// Contains reports whether t falls inside the window. An invalid window
// contains nothing.
func (q *QuietHours) Contains(t time.Time) bool {
	w, err := q.compile()
	return err == nil && w.contains(t)
}

func (w *quietWindow) contains(t time.Time) bool {
	if w == nil || w.start == w.end {
		return false
	}
	l := t.In(w.loc)
	m := l.Hour()*60 + l.Minute()
	if w.start < w.end {
		return m >= w.start && m < w.end
	}
	return m >= w.start || m < w.end
}

// ExemptFromQuiet reports whether a priority level plays through quiet hours:
// emergency always does (DESIGN: "ignores quiet hours"), and so does
// priority, which an operator raises deliberately above routine content;
// normal and background are skipped.
func ExemptFromQuiet(priority string) bool {
	return wire.PriorityRank(priority) >= wire.PriorityRank(wire.PriorityPriority)
}

func parseHHMM(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}
