package schedule

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Spacing limits (docs/scheduling.md, "Minimum interval").
const (
	// DefaultMinInterval is the shortest gap allowed between two
	// occurrences of one schedule unless the admin configures another
	// (schedule.min_interval). Every firing is a new broadcast on every
	// loudspeaker of its zones; five minutes is far shorter than anything a
	// village timetable needs (bulletins run daily, reminders hourly), and
	// long enough that a typo such as FREQ=SECONDLY or "* * * * *" cannot
	// turn the loudspeakers into a siren.
	DefaultMinInterval = 5 * time.Minute
	// spacingProbe is how many occurrences CheckSpacing expands. Rules
	// repeat with a period of at most a year (RFC 5545 §3.3.10 FREQ), and
	// the closest pair of a day, week or month shows within the first
	// occurrences; 500 of them cover a year of a rule firing daily.
	spacingProbe = 500
	// RepeatGap is the silence the trigger puts between repeats of a
	// scheduled source.
	RepeatGap = 600 * time.Millisecond
	// ChimeLength is the length of the pre-announcement chime.
	ChimeLength = time.Second
	// textCharsPerSecond is a generous upper bound on how fast espeak-ng
	// speaks (its default is 175 words per minute, about 15 characters per
	// second), so a text's estimated length is a lower bound and a schedule
	// is never refused for a length its text does not have.
	textCharsPerSecond = 20
)

// PlayLength is how long one firing of the schedule plays when that is
// known before it fires: the media's duration (mediaLength, 0 when
// unknown), the text's estimated length or the relay window, times Repeat
// with the gaps between, plus the chime. It returns 0 when unknown.
func (s *Schedule) PlayLength(mediaLength time.Duration) time.Duration {
	var one time.Duration
	switch s.Source.Kind {
	case SourceRelay:
		one = s.Source.Duration
	case SourceMedia:
		one = mediaLength
	case SourceText:
		one = time.Duration(utf8.RuneCountInString(s.Source.Text)) * time.Second / textCharsPerSecond
	}
	if one <= 0 {
		return 0
	}
	n := time.Duration(max(s.Repeat, 1))
	if s.Source.Kind == SourceRelay {
		n = 1 // a relay window is played once, whatever Repeat says
	}
	total := n*one + (n-1)*RepeatGap
	if s.Chime {
		total += ChimeLength
	}
	return total
}

// CheckSpacing refuses a recurring schedule whose occurrences come closer
// together than minGap, or not later than playFor after each other (each
// firing is a new broadcast, so the schedule would overlap itself). It
// expands the rule's first occurrences after UpdatedAt (or now), ignoring
// the validity window: a rule that fires every second is refused even for
// one day. A one-shot (At) always passes. The error is a *FieldError
// naming "rrule" or "cron" and wrapping ErrTooFrequent.
func (s *Schedule) CheckSpacing(minGap, playFor time.Duration) error {
	if !s.At.IsZero() {
		return nil
	}
	field := "rrule"
	if s.Cron != "" {
		field = "cron"
	}
	p, err := s.compile()
	if err != nil {
		return err
	}
	ref := s.UpdatedAt
	if ref.IsZero() {
		ref = time.Now()
	}
	bare := *p
	bare.from, bare.until = time.Time{}, time.Time{}
	next := bare.iter(ref)
	prev, ok := next()
	if !ok {
		return nil
	}
	closest := time.Duration(-1)
	var at time.Time
	for range spacingProbe - 1 {
		t, ok := next()
		if !ok {
			break
		}
		if gap := t.Sub(prev); closest < 0 || gap < closest {
			closest, at = gap, prev
		}
		prev = t
	}
	if closest < 0 {
		return nil // a single occurrence
	}
	loc, _ := s.Location()
	when := at.In(loc).Format(time.RFC3339)
	if closest < minGap {
		return fieldErr(field, fmt.Sprintf("fires %v apart (from %s); the minimum interval is %v (schedule.min_interval)", closest, when, minGap), ErrTooFrequent)
	}
	if playFor > 0 && closest <= playFor {
		return fieldErr(field, fmt.Sprintf("fires %v apart (from %s), but one firing plays for %v: it would overlap itself", closest, when, playFor.Round(time.Second)), ErrTooFrequent)
	}
	return nil
}
