package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func valid() Schedule {
	return Schedule{
		ID: "s1", Name: "Morning news",
		RRule:    "FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
		Zones:    []string{"thon-1", "thon-2"},
		Source:   Source{Kind: SourceMedia, MediaID: "m1"},
		Priority: "normal", Volume: 80, Enabled: true,
		CreatedAt: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC),
		UpdatedAt: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC),
	}
}

func TestNext(t *testing.T) {
	hcm := mustLoc(t, "Asia/Ho_Chi_Minh")
	// Monday 10 March 2025, 12:00 local.
	after := time.Date(2025, 3, 10, 12, 0, 0, 0, hcm)
	d := func(mo time.Month, day, h, m int) time.Time { return time.Date(2025, mo, day, h, m, 0, 0, hcm).UTC() }
	cases := []struct {
		name  string
		mod   func(*Schedule)
		after time.Time
		want  []time.Time
	}{
		{"daily 06:00", func(s *Schedule) { s.RRule = "FREQ=DAILY;BYHOUR=6;BYMINUTE=0" }, after,
			[]time.Time{d(3, 11, 6, 0), d(3, 12, 6, 0), d(3, 13, 6, 0)}},
		{"daily 06:00 cron", func(s *Schedule) { s.RRule, s.Cron = "", "0 6 * * *" }, after,
			[]time.Time{d(3, 11, 6, 0), d(3, 12, 6, 0), d(3, 13, 6, 0)}},
		{"weekdays 17:30", func(s *Schedule) { s.RRule = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=17;BYMINUTE=30" },
			time.Date(2025, 3, 13, 18, 0, 0, 0, hcm), // Thursday evening
			[]time.Time{d(3, 14, 17, 30), d(3, 17, 17, 30), d(3, 18, 17, 30)}},
		{"weekdays 17:30 cron", func(s *Schedule) { s.RRule, s.Cron = "", "30 17 * * 1-5" },
			time.Date(2025, 3, 13, 18, 0, 0, 0, hcm),
			[]time.Time{d(3, 14, 17, 30), d(3, 17, 17, 30), d(3, 18, 17, 30)}},
		{"every Monday 07:00", func(s *Schedule) { s.RRule = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=0" }, after,
			[]time.Time{d(3, 17, 7, 0), d(3, 24, 7, 0), d(3, 31, 7, 0)}},
		{"1st of the month 08:00", func(s *Schedule) { s.RRule = "FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=8;BYMINUTE=0" }, after,
			[]time.Time{d(4, 1, 8, 0), d(5, 1, 8, 0), d(6, 1, 8, 0)}},
		{"1st of the month cron", func(s *Schedule) { s.RRule, s.Cron = "", "0 8 1 * *" }, after,
			[]time.Time{d(4, 1, 8, 0), d(5, 1, 8, 0), d(6, 1, 8, 0)}},
		{"validity window", func(s *Schedule) {
			s.From, s.Until = time.Date(2025, 3, 12, 0, 0, 0, 0, hcm), time.Date(2025, 3, 13, 6, 0, 0, 0, hcm)
		}, after, []time.Time{d(3, 12, 6, 0), d(3, 13, 6, 0)}},
		{"one-shot", func(s *Schedule) { s.RRule, s.At = "", time.Date(2025, 3, 10, 19, 0, 0, 0, hcm) }, after,
			[]time.Time{d(3, 10, 19, 0)}},
		{"COUNT from anchor", func(s *Schedule) {
			s.RRule = "FREQ=DAILY;COUNT=3;BYHOUR=6"
			s.CreatedAt = time.Date(2025, 3, 9, 12, 0, 0, 0, hcm)
		}, time.Date(2025, 3, 9, 0, 0, 0, 0, hcm), []time.Time{d(3, 10, 6, 0), d(3, 11, 6, 0), d(3, 12, 6, 0)}},
		{"explicit DTSTART", func(s *Schedule) {
			s.RRule = "DTSTART;TZID=Asia/Ho_Chi_Minh:20250301T061500\nRRULE:FREQ=DAILY;INTERVAL=2"
		}, after, []time.Time{d(3, 11, 6, 15), d(3, 13, 6, 15), d(3, 15, 6, 15)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := valid()
			c.mod(&s)
			got, err := s.Next(c.after, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if !got[i].Equal(c.want[i]) || got[i].Location() != time.UTC {
					t.Errorf("occurrence %d: got %v, want %v (UTC)", i, got[i], c.want[i])
				}
			}
		})
	}
}

// TestNextDST checks that a daily 06:00 stays at 06:00 local wall time
// across a DST change, for both syntaxes.
func TestNextDST(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	for _, s := range []Schedule{
		{ID: "r", RRule: "FREQ=DAILY;BYHOUR=6;BYMINUTE=0", TimeZone: "America/New_York"},
		{ID: "c", Cron: "0 6 * * *", TimeZone: "America/New_York"},
	} {
		got, err := s.Next(time.Date(2025, 3, 7, 12, 0, 0, 0, ny), 4)
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range got {
			l := g.In(ny)
			if l.Hour() != 6 || l.Minute() != 0 || l.Day() != 8+i {
				t.Errorf("%s: occurrence %d = %v local, want 06:00 on March %d", s.ID, i, l, 8+i)
			}
		}
		// 8 March is EST (UTC-5), 9 March onwards EDT (UTC-4).
		if got[0].Hour() != 11 || got[1].Hour() != 10 {
			t.Errorf("%s: UTC hours %d, %d; want 11, 10", s.ID, got[0].Hour(), got[1].Hour())
		}
	}
}

// TestShiftStartPreservesSet checks the DTSTART fast-forward against a full
// walk from the anchor for rules whose phase depends on the anchor.
func TestShiftStartPreservesSet(t *testing.T) {
	rules := []string{
		"FREQ=DAILY;INTERVAL=3;BYHOUR=6,18",
		"FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;BYHOUR=7;BYMINUTE=30",
		"FREQ=WEEKLY",
		"FREQ=MONTHLY",
		"FREQ=MONTHLY;INTERVAL=5;BYDAY=-1FR;BYHOUR=9",
		"FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=16",
		"FREQ=YEARLY;INTERVAL=2;BYMONTH=2,3;BYMONTHDAY=-1;BYHOUR=5",
		"FREQ=HOURLY;INTERVAL=5",
		"FREQ=HOURLY;INTERVAL=7;BYMINUTE=15",
		"FREQ=MINUTELY;INTERVAL=45;BYHOUR=6,7,8,9",
		"FREQ=SECONDLY;INTERVAL=7000",
	}
	anchor := time.Date(2023, 1, 31, 13, 17, 0, 0, time.UTC)
	for _, r := range rules {
		s := Schedule{ID: "x", RRule: r, CreatedAt: anchor}
		p, err := s.compile()
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		slow := *p
		slow.count = true // disables the fast-forward
		for _, after := range []time.Time{
			anchor.Add(-time.Hour), anchor.Add(36 * time.Hour), anchor.AddDate(0, 2, 3),
			anchor.AddDate(1, 1, 1).Add(5 * time.Hour), anchor.AddDate(2, 0, 17).Add(7 * time.Minute),
		} {
			fast, full := p.iter(after), slow.iter(after)
			for i := 0; i < 12; i++ {
				a, aok := fast()
				b, bok := full()
				if aok != bok || !a.Equal(b) {
					t.Fatalf("%s after %v, #%d: fast %v %v, full %v %v", r, after, i, a, aok, b, bok)
				}
			}
		}
	}
}

func TestValidate(t *testing.T) {
	known := func(z string) bool { return strings.HasPrefix(z, "thon-") }
	cases := []struct {
		name  string
		mod   func(*Schedule)
		field string
		never bool
	}{
		{"no id", func(s *Schedule) { s.ID = "" }, "id", false},
		{"no name", func(s *Schedule) { s.Name = " " }, "name", false},
		{"neither at rrule cron", func(s *Schedule) { s.RRule = "" }, "at|rrule|cron", false},
		{"rrule and cron", func(s *Schedule) { s.Cron = "0 6 * * *" }, "at|rrule|cron", false},
		{"at and rrule", func(s *Schedule) { s.At = s.UpdatedAt.Add(time.Hour) }, "at|rrule|cron", false},
		{"rrule COUNT=0", func(s *Schedule) { s.RRule = "FREQ=DAILY;COUNT=0" }, "rrule", true},
		{"rrule UNTIL in the past", func(s *Schedule) { s.RRule = "FREQ=DAILY;BYHOUR=6;UNTIL=20240101T000000Z" }, "rrule", true},
		{"rrule 31 February", func(s *Schedule) { s.RRule = "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31" }, "rrule", true},
		{"rrule COUNT exhausted", func(s *Schedule) {
			s.RRule = "FREQ=DAILY;COUNT=2"
			s.CreatedAt = s.UpdatedAt.AddDate(0, 0, -10)
		}, "rrule", true},
		{"rrule 6th Monday", func(s *Schedule) { s.RRule = "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6" }, "rrule", true},
		{"rrule hour off the INTERVAL lattice", func(s *Schedule) { s.RRule = "FREQ=HOURLY;INTERVAL=2;BYHOUR=2" }, "rrule", true}, // created 15:00 local,
		{"rrule no such day", func(s *Schedule) { s.RRule = "FREQ=MINUTELY;BYYEARDAY=366;BYMONTH=1" }, "rrule", true},
		{"rrule syntax", func(s *Schedule) { s.RRule = "FREQ=SOMETIMES" }, "rrule", false},
		{"rrule no FREQ", func(s *Schedule) { s.RRule = "BYHOUR=6" }, "rrule", false},
		{"rrule hour 25", func(s *Schedule) { s.RRule = "FREQ=DAILY;BYHOUR=25" }, "rrule", false},
		{"rrule interval 0", func(s *Schedule) { s.RRule = "FREQ=DAILY;INTERVAL=0" }, "rrule", false},
		{"cron syntax", func(s *Schedule) { s.RRule, s.Cron = "", "61 * * * *" }, "cron", false},
		{"cron 30 February", func(s *Schedule) { s.RRule, s.Cron = "", "0 0 30 2 *" }, "cron", true},
		{"cron @every", func(s *Schedule) { s.RRule, s.Cron = "", "@every 1h" }, "cron", false},
		{"cron TZ prefix", func(s *Schedule) { s.RRule, s.Cron = "", "TZ=UTC 0 6 * * *" }, "cron", false},
		{"cron TZ prefix without spec", func(s *Schedule) { s.RRule, s.Cron = "", "TZ=UTC" }, "cron", false},
		{"at in the past", func(s *Schedule) { s.RRule, s.At = "", s.UpdatedAt.Add(-time.Minute) }, "at", true},
		{"bad time zone", func(s *Schedule) { s.TimeZone = "Asia/Hanoi City" }, "time_zone", false},
		{"until before from", func(s *Schedule) {
			s.From, s.Until = s.UpdatedAt.AddDate(0, 1, 0), s.UpdatedAt.AddDate(0, 0, 1)
		}, "until", false},
		{"window already over", func(s *Schedule) { s.Until = s.UpdatedAt.Add(-time.Hour) }, "until", true},
		{"no zones", func(s *Schedule) { s.Zones = nil }, "zones", false},
		{"unknown zone", func(s *Schedule) { s.Zones = []string{"thon-1", "cho"} }, "zones[1]", false},
		{"unknown source kind", func(s *Schedule) { s.Source = Source{Kind: "tape"} }, "source.kind", false},
		{"media without id", func(s *Schedule) { s.Source = Source{Kind: SourceMedia} }, "source.media_id", false},
		{"text without text", func(s *Schedule) { s.Source = Source{Kind: SourceText} }, "source.text", false},
		{"relay rtsp url", func(s *Schedule) {
			s.Source = Source{Kind: SourceRelay, URL: "rtsp://vov.vn/live", Duration: 30 * time.Minute}
		}, "source.url", false},
		{"relay file url", func(s *Schedule) {
			s.Source = Source{Kind: SourceRelay, URL: "file:///etc/passwd", Duration: 30 * time.Minute}
		}, "source.url", false},
		{"relay without duration", func(s *Schedule) {
			s.Source = Source{Kind: SourceRelay, URL: "https://vov.vn/live.mp3"}
		}, "source.duration", false},
		{"unknown priority", func(s *Schedule) { s.Priority = "urgent" }, "priority", false},
		{"volume 101", func(s *Schedule) { s.Volume = 101 }, "volume", false},
		{"volume -1", func(s *Schedule) { s.Volume = -1 }, "volume", false},
		{"repeat -1", func(s *Schedule) { s.Repeat = -1 }, "repeat", false},
	}
	base := valid()
	if err := base.Validate(known); err != nil {
		t.Fatalf("valid schedule rejected: %v", err)
	}
	relay := valid()
	relay.Source = Source{Kind: SourceRelay, URL: "https://vov.vn/live.mp3", Duration: 30 * time.Minute}
	relay.Cron, relay.RRule = "0 11 * * *", ""
	if err := relay.Validate(known); err != nil {
		t.Fatalf("valid relay rejected: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := valid()
			c.mod(&s)
			err := s.Validate(known)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a *FieldError", err)
			}
			if fe.Field != c.field {
				t.Errorf("field %q, want %q (%v)", fe.Field, c.field, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not match ErrInvalid", err)
			}
			if errors.Is(err, ErrNeverFires) != c.never {
				t.Errorf("%v: ErrNeverFires = %v, want %v", err, !c.never, c.never)
			}
		})
	}
}

func TestQuietHours(t *testing.T) {
	q := QuietHours{Start: "22:00", End: "05:00"}
	hcm := mustLoc(t, DefaultTimeZone)
	for _, c := range []struct {
		h, m int
		want bool
	}{{21, 59, false}, {22, 0, true}, {23, 0, true}, {0, 0, true}, {4, 59, true}, {5, 0, false}, {12, 0, false}} {
		if got := q.Contains(time.Date(2025, 3, 10, c.h, c.m, 0, 0, hcm)); got != c.want {
			t.Errorf("%02d:%02d: got %v, want %v", c.h, c.m, got, c.want)
		}
	}
	if err := (&QuietHours{Start: "25:00", End: "05:00"}).Validate(); err == nil {
		t.Error("25:00 accepted")
	}
	if !ExemptFromQuiet("emergency") || !ExemptFromQuiet("priority") || ExemptFromQuiet("normal") || ExemptFromQuiet("background") {
		t.Error("exemptions wrong")
	}
}

// FuzzValidate checks that no rule text panics the parsers or hangs them.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"FREQ=DAILY;BYHOUR=6", "FREQ=MONTHLY;BYDAY=-1FR", "DTSTART:20250101T000000Z\nRRULE:FREQ=WEEKLY",
		"30 17 * * 1-5", "@daily", "TZ=", "0 0 30 2 *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rule string) {
		for _, s := range []Schedule{{RRule: rule}, {Cron: rule}} {
			s.ID, s.Name, s.Zones, s.Priority = "f", "f", []string{"z"}, "normal"
			s.Source = Source{Kind: SourceText, Text: "x"}
			s.UpdatedAt = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			if err := s.Validate(nil); err == nil {
				if _, err := s.Next(s.UpdatedAt, 2); err != nil {
					t.Fatalf("valid %q but Next failed: %v", rule, err)
				}
			}
		}
	})
}

// TestPreview shows the next five firings of an unsaved daily schedule in
// its own zone, and names the field of a schedule that says no time.
func TestPreview(t *testing.T) {
	now := time.Date(2026, 3, 1, 7, 0, 0, 0, time.UTC) // 14:00 in Hanoi
	sc := Schedule{RRule: "FREQ=DAILY;BYHOUR=6;BYMINUTE=30", TimeZone: "Asia/Ho_Chi_Minh"}
	got, err := sc.Preview(now, 5)
	if err != nil || len(got) != 5 {
		t.Fatalf("preview: %v %v", got, err)
	}
	loc, _ := time.LoadLocation("Asia/Ho_Chi_Minh")
	for i, f := range got {
		want := time.Date(2026, 3, 2+i, 6, 30, 0, 0, loc)
		if !f.Equal(want) {
			t.Errorf("firing %d: %v, want %v", i, f.In(loc), want)
		}
	}
	var fe *FieldError
	if _, err := (Schedule{}).Preview(now, 5); !errors.As(err, &fe) || fe.Field != "at|rrule|cron" {
		t.Errorf("no time: %v", err)
	}
	once := Schedule{At: now.Add(time.Hour)}
	if got, err := once.Preview(now, 5); err != nil || len(got) != 1 {
		t.Errorf("once: %v %v", got, err)
	}
}
