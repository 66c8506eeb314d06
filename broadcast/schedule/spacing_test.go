package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCheckSpacing is issue 12: a schedule may not fire more often than the
// minimum interval (FREQ=SECONDLY, a one-minute cron, two minutes a day
// apart), nor overlap itself when its length is known.
func TestCheckSpacing(t *testing.T) {
	const minGap = 5 * time.Minute
	cases := []struct {
		name    string
		mod     func(*Schedule)
		playFor time.Duration
		field   string // "" means accepted
	}{
		{"secondly", func(s *Schedule) { s.RRule = "FREQ=SECONDLY" }, 0, "rrule"},
		{"secondly with an end", func(s *Schedule) { s.RRule = "FREQ=SECONDLY;COUNT=10" }, 0, "rrule"},
		{"minutely", func(s *Schedule) { s.RRule = "FREQ=MINUTELY" }, 0, "rrule"},
		{"every 4 minutes", func(s *Schedule) { s.RRule = "FREQ=MINUTELY;INTERVAL=4" }, 0, "rrule"},
		{"two minutes apart once a day", func(s *Schedule) { s.RRule = "FREQ=DAILY;BYHOUR=6;BYMINUTE=0,2" }, 0, "rrule"},
		{"cron every minute", func(s *Schedule) { s.RRule, s.Cron = "", "* * * * *" }, 0, "cron"},
		{"cron every second", func(s *Schedule) { s.RRule, s.Cron = "", "* * * * * *" }, 0, "cron"},
		{"cron twice at 6", func(s *Schedule) { s.RRule, s.Cron = "", "0,1 6 * * *" }, 0, "cron"},
		{"every 5 minutes", func(s *Schedule) { s.RRule = "FREQ=MINUTELY;INTERVAL=5" }, 0, ""},
		{"cron every 5 minutes", func(s *Schedule) { s.RRule, s.Cron = "", "*/5 * * * *" }, 0, ""},
		{"daily", func(s *Schedule) {}, 0, ""},
		{"one-shot", func(s *Schedule) { s.RRule, s.At = "", s.UpdatedAt.Add(time.Hour) }, 0, ""},
		{"hourly, 59 minutes long", func(s *Schedule) { s.RRule = "FREQ=HOURLY" }, 59 * time.Minute, ""},
		{"hourly, an hour long", func(s *Schedule) { s.RRule = "FREQ=HOURLY" }, time.Hour, "rrule"},
		{"cron every 10 minutes, 12 minutes long", func(s *Schedule) { s.RRule, s.Cron = "", "*/10 * * * *" }, 12 * time.Minute, "cron"},
	}
	for _, tc := range cases {
		s := valid()
		tc.mod(&s)
		start := time.Now()
		err := s.CheckSpacing(minGap, tc.playFor)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrTooFrequent) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want a FieldError on %s wrapping ErrTooFrequent", tc.name, err, tc.field)
			continue
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

func TestPlayLength(t *testing.T) {
	s := valid()
	if got := s.PlayLength(0); got != 0 {
		t.Errorf("unknown media: %v", got)
	}
	s.Repeat, s.Chime = 3, true
	if got, want := s.PlayLength(10*time.Minute), 30*time.Minute+2*RepeatGap+ChimeLength; got != want {
		t.Errorf("media ×3 with chime: %v, want %v", got, want)
	}
	s.Source = Source{Kind: SourceRelay, URL: "http://radio.example/live", Duration: time.Hour}
	if got := s.PlayLength(0); got != time.Hour+ChimeLength {
		t.Errorf("relay: %v", got)
	}
	s.Source, s.Repeat, s.Chime = Source{Kind: SourceText, Text: strings.Repeat("xin chào ", 400)}, 1, false // 3,600 characters
	if got := s.PlayLength(0); got != 180*time.Second {
		t.Errorf("text: %v, want 3m0s", got)
	}
}
