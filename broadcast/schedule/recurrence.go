package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/teambition/rrule-go"
)

// plan is a compiled schedule: the parsed rule plus its zone and window.
type plan struct {
	loc   *time.Location
	at    time.Time
	ropt  *rrule.ROption // defaults made explicit, Dtstart = anchor
	count bool           // COUNT given: the set must be walked from the anchor
	cron  *cron.SpecSchedule
	from  time.Time
	until time.Time
}

// cronParser accepts the classic 5 fields, an optional leading seconds field
// and descriptors such as @daily.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// compile parses the schedule's rule. Errors are *FieldError.
func (s *Schedule) compile() (*plan, error) {
	loc, err := s.Location()
	if err != nil {
		return nil, err
	}
	p := &plan{loc: loc, from: s.From, until: s.Until}
	switch {
	case !s.At.IsZero():
		p.at = s.At
	case s.RRule != "":
		anchor := s.From
		if anchor.IsZero() {
			anchor = s.CreatedAt
		}
		if anchor.IsZero() {
			// A fixed anchor keeps INTERVAL phases deterministic when the
			// schedule carries no dates at all (tests, previews).
			anchor = time.Date(2000, 1, 1, 0, 0, 0, 0, loc)
		}
		anchor = anchor.In(loc).Truncate(time.Second)
		if p.ropt, p.count, err = parseRRule(s.RRule, loc, anchor); err != nil {
			return nil, err
		}
	case s.Cron != "":
		if p.cron, err = parseCron(s.Cron, loc); err != nil {
			return nil, err
		}
	default:
		return nil, fieldErr("at|rrule|cron", "exactly one of at, rrule and cron is required, got 0", nil)
	}
	return p, nil
}

// parseRRule parses an RFC 5545 §3.3.10 RECUR value, optionally preceded by
// a DTSTART line, and makes every default that rrule-go would derive from
// DTSTART explicit, so that DTSTART can later be moved forward by whole
// periods without changing the set.
func parseRRule(text string, loc *time.Location, anchor time.Time) (opt *rrule.ROption, hasCount bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			opt, err = nil, fieldErr("rrule", "cannot parse", fmt.Errorf("%v", r))
		}
	}()
	text = strings.TrimSpace(text)
	body := text
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		body = text[i+1:]
	}
	body = strings.TrimPrefix(strings.TrimSpace(body), "RRULE:")
	for _, part := range strings.Split(body, ";") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "COUNT":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, false, fieldErr("rrule", "COUNT must be a positive integer (RFC 5545 §3.3.10)", ErrNeverFires)
			}
			if n > MaxCount {
				return nil, false, fieldErr("rrule", fmt.Sprintf("COUNT above %d", MaxCount), nil)
			}
			hasCount = true
		case "INTERVAL":
			if n, err := strconv.Atoi(v); err != nil || n <= 0 {
				return nil, false, fieldErr("rrule", "INTERVAL must be a positive integer (RFC 5545 §3.3.10)", nil)
			}
		}
	}
	o, err := rrule.StrToROptionInLocation(text, loc)
	if err != nil {
		return nil, false, fieldErr("rrule", "cannot parse", err)
	}
	if _, err := rrule.NewRRule(*o); err != nil {
		return nil, false, fieldErr("rrule", "out of range", err)
	}
	if impossibleMonthDay(o) {
		return nil, false, fieldErr("rrule", "BYMONTHDAY does not exist in any BYMONTH", ErrNeverFires)
	}
	// RFC 5545 takes missing BYxxx parts from DTSTART. Without an explicit
	// DTSTART the anchor is an instant (creation time), not a time of day
	// anyone chose, so missing BYHOUR/BYMINUTE/BYSECOND mean 0 instead.
	var defaults time.Time
	if o.Dtstart.IsZero() {
		o.Dtstart = anchor
		defaults = time.Date(anchor.Year(), anchor.Month(), anchor.Day(), 0, 0, 0, 0, loc)
	} else {
		o.Dtstart = o.Dtstart.In(loc)
		defaults = o.Dtstart
	}
	fillDefaults(o, defaults)
	if !timeOfDayReachable(o) {
		return nil, false, fieldErr("rrule", "BYHOUR/BYMINUTE/BYSECOND never reached at this INTERVAL", ErrNeverFires)
	}
	if !setposReachable(o) {
		return nil, false, fieldErr("rrule", "BYSETPOS beyond the largest possible set", ErrNeverFires)
	}
	if !dayReachable(o) {
		return nil, false, fieldErr("rrule", "no day matches the BYxxx parts", ErrNeverFires)
	}
	return o, hasCount, nil
}

// timeOfDayReachable reports whether an HOURLY, MINUTELY or SECONDLY rule
// can ever meet its BYHOUR/BYMINUTE/BYSECOND filters. Its time of day walks
// the lattice DTSTART + k·INTERVAL (mod one day); when no filtered time lies
// on it, rrule-go v1.8.2 loops forever (e.g. FREQ=HOURLY;INTERVAL=2;BYHOUR=1
// from an even hour), so such rules must never reach the iterator.
func timeOfDayReachable(o *rrule.ROption) bool {
	var unit int
	switch o.Freq {
	case rrule.HOURLY:
		unit = 3600
	case rrule.MINUTELY:
		unit = 60
	case rrule.SECONDLY:
		unit = 1
	default:
		return true
	}
	const day = 86400
	step := gcd(o.Interval%day*unit%day, day) // lattice spacing in seconds
	if step == 0 {
		step = day
	}
	d := o.Dtstart
	base := d.Hour()*3600 + d.Minute()*60 + d.Second()
	all := func(n int) []int {
		v := make([]int, n)
		for i := range v {
			v[i] = i
		}
		return v
	}
	hours, minutes, seconds := o.Byhour, []int{d.Minute()}, []int{d.Second()}
	if len(hours) == 0 {
		hours = all(24)
	}
	if o.Freq >= rrule.MINUTELY {
		if minutes = o.Byminute; len(minutes) == 0 {
			minutes = all(60)
		}
	}
	if o.Freq == rrule.SECONDLY {
		if seconds = o.Bysecond; len(seconds) == 0 {
			seconds = all(60)
		}
	}
	for _, h := range hours {
		for _, m := range minutes {
			for _, sec := range seconds {
				if ((h*3600+m*60+sec-base)%step+step)%step == 0 {
					return true
				}
			}
		}
	}
	return false
}

// setposReachable reports whether some BYSETPOS index fits in the largest
// set one period can produce (RFC 5545 §3.3.10: BYSETPOS selects within the
// set of each interval). "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6" never fires,
// and rrule-go would only find that out after scanning to the year 9999.
func setposReachable(o *rrule.ROption) bool {
	if len(o.Bysetpos) == 0 {
		return true
	}
	days := 1
	switch o.Freq {
	case rrule.YEARLY:
		days = 366
		if len(o.Bymonthday) > 0 {
			months := len(o.Bymonth)
			if months == 0 {
				months = 12
			}
			days = min(days, len(o.Bymonthday)*months)
		}
		if len(o.Byyearday) > 0 {
			days = min(days, len(o.Byyearday))
		}
		if len(o.Byweekday) > 0 {
			days = min(days, 53*len(o.Byweekday))
		}
	case rrule.MONTHLY:
		days = 31
		if len(o.Bymonthday) > 0 {
			days = min(days, len(o.Bymonthday))
		}
		if len(o.Byweekday) > 0 {
			days = min(days, 5*len(o.Byweekday))
		}
	case rrule.WEEKLY:
		days = 7
		if len(o.Byweekday) > 0 {
			days = min(days, len(o.Byweekday))
		}
	}
	n := func(v []int) int { return max(len(v), 1) }
	times := 1
	switch o.Freq {
	case rrule.HOURLY:
		times = n(o.Byminute) * n(o.Bysecond)
	case rrule.MINUTELY:
		times = n(o.Bysecond)
	case rrule.SECONDLY:
	default:
		times = n(o.Byhour) * n(o.Byminute) * n(o.Bysecond)
	}
	for _, p := range o.Bysetpos {
		if p < 0 {
			p = -p
		}
		if p <= days*times {
			return true
		}
	}
	return false
}

var weekdays = [...]rrule.Weekday{rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU}

// dayReachable reports whether any day up to rrule-go's last year passes
// the day-level filters of a WEEKLY or finer rule. Such rules advance one
// day or week per step, so a never-matching one (BYYEARDAY=366;BYMONTH=1)
// would scan ~8000 years (seconds of CPU); the same filters on a YEARLY
// envelope cost one step per year.
func dayReachable(o *rrule.ROption) bool {
	if o.Freq < rrule.WEEKLY || len(o.Byeaster) != 0 ||
		len(o.Bymonth)+len(o.Byweekno)+len(o.Byyearday)+len(o.Bymonthday)+len(o.Byweekday) == 0 {
		return true
	}
	env := rrule.ROption{
		Freq:       rrule.YEARLY,
		Dtstart:    time.Date(o.Dtstart.Year(), 1, 1, 0, 0, 0, 0, o.Dtstart.Location()),
		Wkst:       o.Wkst,
		Bymonth:    o.Bymonth,
		Bymonthday: o.Bymonthday,
		Byyearday:  o.Byyearday,
		Byweekno:   o.Byweekno,
		Byhour:     []int{0},
		Byminute:   []int{0},
		Bysecond:   []int{0},
	}
	for _, w := range o.Byweekday {
		env.Byweekday = append(env.Byweekday, weekdays[w.Day()]) // finer than MONTHLY: ±n is ignored
	}
	r, err := rrule.NewRRule(env)
	if err != nil {
		return true
	}
	_, ok := r.Iterator()()
	return ok
}

// impossibleMonthDay catches rules such as BYMONTH=2;BYMONTHDAY=31 whose
// expansion would otherwise scan every year up to 9999 before giving up.
func impossibleMonthDay(o *rrule.ROption) bool {
	if len(o.Bymonth) == 0 || len(o.Bymonthday) == 0 {
		return false
	}
	maxDays := 0
	for _, m := range o.Bymonth {
		maxDays = max(maxDays, time.Date(2024, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()) // 2024: leap year
	}
	for _, d := range o.Bymonthday {
		if d < 0 {
			d = -d
		}
		if d <= maxDays {
			return false
		}
	}
	return true
}

var pyWeekday = [...]rrule.Weekday{rrule.SU, rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA}

// fillDefaults mirrors rrule-go's buildRRule defaults (RFC 5545 §3.3.10:
// missing BYxxx parts are taken from DTSTART), taking them from d.
func fillDefaults(o *rrule.ROption, d time.Time) {
	if len(o.Byweekno) == 0 && len(o.Byyearday) == 0 && len(o.Bymonthday) == 0 &&
		len(o.Byweekday) == 0 && len(o.Byeaster) == 0 {
		switch o.Freq {
		case rrule.YEARLY:
			if len(o.Bymonth) == 0 {
				o.Bymonth = []int{int(d.Month())}
			}
			o.Bymonthday = []int{d.Day()}
		case rrule.MONTHLY:
			o.Bymonthday = []int{d.Day()}
		case rrule.WEEKLY:
			o.Byweekday = []rrule.Weekday{pyWeekday[d.Weekday()]}
		}
	}
	if len(o.Byhour) == 0 && o.Freq < rrule.HOURLY {
		o.Byhour = []int{d.Hour()}
	}
	if len(o.Byminute) == 0 && o.Freq < rrule.MINUTELY {
		o.Byminute = []int{d.Minute()}
	}
	if len(o.Bysecond) == 0 && o.Freq < rrule.SECONDLY {
		o.Bysecond = []int{d.Second()}
	}
	if o.Interval < 1 {
		o.Interval = 1
	}
}

func parseCron(spec string, loc *time.Location) (sched *cron.SpecSchedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fieldErr("cron", "cannot parse", fmt.Errorf("%v", r))
		}
	}()
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, fieldErr("cron", "TZ= prefix not allowed; set time_zone", nil)
	}
	if strings.HasPrefix(spec, "@every") {
		return nil, fieldErr("cron", "@every is relative to the query time, not the calendar; use an rrule", nil)
	}
	c, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fieldErr("cron", "cannot parse", err)
	}
	ss, ok := c.(*cron.SpecSchedule)
	if !ok {
		return nil, fieldErr("cron", "unsupported expression", nil)
	}
	cp := *ss
	cp.Location = loc
	return &cp, nil
}

// iter returns a generator of occurrences strictly after after, within the
// validity window, in ascending order and in UTC.
func (p *plan) iter(after time.Time) func() (time.Time, bool) {
	start := after
	if !p.from.IsZero() && p.from.Add(-time.Nanosecond).After(start) {
		start = p.from.Add(-time.Nanosecond)
	}
	inWindow := func(t time.Time) (ok, done bool) {
		if !p.until.IsZero() && t.After(p.until) {
			return false, true
		}
		return t.After(after) && (p.from.IsZero() || !t.Before(p.from)), false
	}
	done := false
	switch {
	case !p.at.IsZero():
		return func() (time.Time, bool) {
			if done {
				return time.Time{}, false
			}
			done = true
			if ok, _ := inWindow(p.at); ok {
				return p.at.UTC(), true
			}
			return time.Time{}, false
		}
	case p.cron != nil:
		cur := start
		return func() (time.Time, bool) {
			for !done {
				t := p.cron.Next(cur)
				if t.IsZero() {
					done = true
					break
				}
				cur = t
				ok, end := inWindow(t)
				if end {
					done = true
					break
				}
				if ok {
					return t.UTC(), true
				}
			}
			return time.Time{}, false
		}
	case p.ropt != nil:
		o := *p.ropt
		if !p.count {
			o.Dtstart = shiftStart(&o, start)
		}
		r, err := rrule.NewRRule(o)
		if err != nil {
			return func() (time.Time, bool) { return time.Time{}, false }
		}
		next := r.Iterator()
		return func() (time.Time, bool) {
			for !done {
				t, ok := next()
				if !ok {
					done = true
					break
				}
				ok, end := inWindow(t)
				if end {
					done = true
					break
				}
				if ok {
					return t.UTC(), true
				}
			}
			return time.Time{}, false
		}
	}
	return func() (time.Time, bool) { return time.Time{}, false }
}

// shiftStart moves DTSTART forward by a whole number of recurrence periods
// so that it lands at least one full period before target. With every
// BYxxx default already explicit and no COUNT, the recurrence set from the
// new DTSTART on equals the original one, and expansion no longer walks
// every period since the anchor (a MINUTELY rule created a year ago would
// otherwise cost half a million steps per query).
func shiftStart(o *rrule.ROption, target time.Time) time.Time {
	anchor := o.Dtstart
	loc := anchor.Location()
	t := target.In(loc)
	if !t.After(anchor) {
		return anchor
	}
	iv := max(o.Interval, 1)
	switch o.Freq {
	case rrule.YEARLY:
		k := (t.Year() - anchor.Year() - iv - 1) / iv
		if k <= 0 {
			return anchor
		}
		return time.Date(anchor.Year()+k*iv, 1, 1, 0, 0, 0, 0, loc)
	case rrule.MONTHLY:
		months := (t.Year()-anchor.Year())*12 + int(t.Month()) - int(anchor.Month())
		k := (months - iv - 1) / iv
		if k <= 0 {
			return anchor
		}
		return time.Date(anchor.Year(), anchor.Month()+time.Month(k*iv), 1, 0, 0, 0, 0, loc)
	}
	var stride int // days after which the wall-clock phase repeats
	switch o.Freq {
	case rrule.WEEKLY:
		stride = 7 * iv
	case rrule.DAILY:
		stride = iv
	case rrule.HOURLY:
		stride = iv / gcd(iv, 24)
	case rrule.MINUTELY:
		stride = iv / gcd(iv, 24*60)
	case rrule.SECONDLY:
		stride = iv / gcd(iv, 24*3600)
	default:
		return anchor
	}
	days := civilDay(t) - civilDay(anchor)
	k := (days - stride - 1) / stride
	if k <= 0 {
		return anchor
	}
	return time.Date(anchor.Year(), anchor.Month(), anchor.Day()+k*stride,
		anchor.Hour(), anchor.Minute(), anchor.Second(), 0, loc)
}

func civilDay(t time.Time) int {
	y, m, d := t.Date()
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
