package main

// The owner's calendar: where an hour, a day, a week and a month start at the configured
// zone (an IANA zone with its changes of the clocks, or a fixed UTC offset), how to step
// from one to the next, and how a range splits into whole units and the parts at its ends.
// Every other file asks here; PostgreSQL is given instants and dates, never a zone.

import (
	"strings"
	"time"

	// The zone database, for hosts and containers without /usr/share/zoneinfo.
	_ "time/tzdata"
)

// zoneName names the zone of loc as the owner set it: an IANA name such as Europe/Berlin,
// or UTC+05:30 for a fixed offset (the utc_offset keys).
func zoneName(loc *time.Location) string {
	if offset, fixed := fixedOffset(loc); fixed {
		return "UTC" + formatOffset(offset)
	}
	return loc.String()
}

// fixedOffset returns the offset of loc in seconds east of UTC, and true when it never
// changes.
func fixedOffset(loc *time.Location) (int, bool) {
	t := time.Now().In(loc)
	start, end := t.ZoneBounds()
	_, offset := t.Zone()
	if !start.IsZero() || !end.IsZero() || strings.Contains(loc.String(), "/") {
		return offset, false
	}
	return offset, true
}

// sinceHour is how long ago, at t, the local clock last showed a whole hour, measured on
// the clock in force at t.
func sinceHour(t time.Time, loc *time.Location) time.Duration {
	l := t.In(loc)
	return time.Duration(l.Minute())*time.Minute + time.Duration(l.Second())*time.Second + time.Duration(l.Nanosecond())
}

// hourStart returns the start of t's hour at loc: t less its minutes and seconds on the
// local clock, taken twice, for the clocks that change by half an hour (Lord Howe Island)
// within an hour. On an autumn night the hour that the clock shows twice is two hours, each
// starting at its own instant; PostgreSQL's rebuild of the rollups takes the same two steps.
func hourStart(t time.Time, loc *time.Location) time.Time {
	s := t.Add(-sinceHour(t, loc))
	return s.Add(-sinceHour(s, loc)).In(loc)
}

// nextHour returns the start of the hour after the one that starts at s.
func nextHour(s time.Time, loc *time.Location) time.Time {
	n := s.Add(time.Hour)
	if d := sinceHour(n, loc); d != 0 {
		n = n.Add(time.Hour - d)
	}
	return n.In(loc)
}

// dateStart returns the first instant of the local date y-m-d at loc; the date is
// normalized as time.Date does (May 32 is June 1). Where the clocks change at midnight, a
// day starts at 01:00 (the change) or at the first of two midnights.
func dateStart(y int, m time.Month, d int, loc *time.Location) time.Time {
	y, m, d = time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Date()
	s := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if sy, sm, sd := s.Date(); sy != y || sm != m || sd != d {
		// Midnight did not exist and time.Date went back to the day before.
		_, end := s.ZoneBounds()
		return end.In(loc)
	}
	if start, _ := s.ZoneBounds(); !start.IsZero() {
		// Midnight may have been shown twice: the first of them, in the period before.
		_, before := start.Add(-time.Nanosecond).Zone()
		first := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Add(-time.Duration(before) * time.Second)
		if first.Before(start) && first.Before(s) {
			if fy, fm, fd := first.In(loc).Date(); fy == y && fm == m && fd == d {
				return first.In(loc)
			}
		}
	}
	return s
}

// dayStart returns the start of t's local day at loc.
func dayStart(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return dateStart(y, m, d, loc)
}

// addDays returns the start of the local day n days after the one holding t (n may be
// negative); a day is 23, 24 or 25 hours long.
func addDays(t time.Time, n int, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return dateStart(y, m, d+n, loc)
}

// isDayStart reports whether t is the start of a local day at loc.
func isDayStart(t time.Time, loc *time.Location) bool {
	return dayStart(t, loc).Equal(t)
}

// localDate returns t's local date at loc as YYYY-MM-DD, the key of daily_calls.
func localDate(t time.Time, loc *time.Location) string {
	return t.In(loc).Format(time.DateOnly)
}

// civilDay returns t's local date at loc in days since 1970-01-01, as the journal counts
// the days of daily_calls.
func civilDay(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// daysBetween returns how many local days lie from the start of a's day to the start of b's.
func daysBetween(a, b time.Time, loc *time.Location) int64 {
	return civilDay(b, loc) - civilDay(a, loc)
}

// trunc returns the start at loc of the bucket of u that holds t: its hour, its day, its
// week (from Monday, as PostgreSQL's date_trunc) or its month.
func (u bucketUnit) trunc(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	switch u.name {
	case "hour":
		return hourStart(t, loc)
	case "week":
		// Go's weeks start on Sunday (0); PostgreSQL's on Monday.
		back := (int(l.Weekday()) + 6) % 7
		return dateStart(l.Year(), l.Month(), l.Day()-back, loc)
	case "month":
		return dateStart(l.Year(), l.Month(), 1, loc)
	default:
		return dateStart(l.Year(), l.Month(), l.Day(), loc)
	}
}

// next returns the start of the bucket after the one starting at s.
func (u bucketUnit) next(s time.Time, loc *time.Location) time.Time {
	l := s.In(loc)
	switch u.name {
	case "hour":
		return nextHour(s, loc)
	case "week":
		return dateStart(l.Year(), l.Month(), l.Day()+7, loc)
	case "month":
		return dateStart(l.Year(), l.Month()+1, 1, loc)
	default:
		return dateStart(l.Year(), l.Month(), l.Day()+1, loc)
	}
}

// floorEnd returns the end of the hour (for hourly buckets) or of the day (for the others)
// that holds t: where an open range ends, after its last call.
func (u bucketUnit) floorEnd(t time.Time, loc *time.Location) time.Time {
	if u.name == "hour" {
		return nextHour(hourStart(t, loc), loc)
	}
	return addDays(t, 1, loc)
}

// floorStart returns the start of the hour (for hourly buckets) or of the day (for the
// others) that holds t: where an open range starts, before its first call.
func (u bucketUnit) floorStart(t time.Time, loc *time.Location) time.Time {
	if u.name == "hour" {
		return hourStart(t, loc)
	}
	return dayStart(t, loc)
}

// count returns how many buckets a range from `from` to `to` (exclusive) holds at loc. It
// counts in whole numbers, so that ranges of thousands of years do not overflow; hours are
// counted on the instants, so that a spring day has 23 and an autumn day 25.
func (u bucketUnit) count(from, to time.Time, loc *time.Location) int64 {
	last := to.Add(-time.Microsecond)
	switch u.name {
	case "hour":
		return floorDiv(last.Unix()-hourStart(from, loc).Unix(), 3600) + 1
	case "day":
		return daysBetween(from, last, loc) + 1
	case "week":
		// 1970-01-01 was a Thursday: shift so that weeks start on Mondays.
		return floorDiv(civilDay(last, loc)+3, 7) - floorDiv(civilDay(from, loc)+3, 7) + 1
	default:
		a, b := from.In(loc), last.In(loc)
		return (int64(b.Year())*12 + int64(b.Month())) - (int64(a.Year())*12 + int64(a.Month())) + 1
	}
}

// starts returns the start of every bucket of u from the one holding from to the one
// holding the instant before to, at loc.
func (u bucketUnit) starts(from, to time.Time, loc *time.Location) []time.Time {
	var out []time.Time
	for t := u.trunc(from, loc); t.Before(to); t = u.next(t, loc) {
		out = append(out, t)
	}
	return out
}

// splitRange splits a range into the whole hours (perDay: days) at loc inside it, and the
// parts at its ends, each within one hour (day). hasWhole is false when no whole hour (day)
// lies inside; an open end has no part.
func splitRange(tr timeRange, loc *time.Location, perDay bool) (whole timeRange, hasWhole bool, parts []timeRange) {
	unit := bucketUnit{"hour"}
	if perDay {
		unit = bucketUnit{"day"}
	}
	whole = tr
	if !tr.from.IsZero() {
		if f := unit.trunc(tr.from, loc); !f.Equal(tr.from) {
			whole.from = unit.next(f, loc)
		}
	}
	if !tr.to.IsZero() {
		whole.to = unit.trunc(tr.to, loc)
	}
	if !tr.from.IsZero() && !tr.to.IsZero() && whole.from.After(whole.to) {
		// Both ends lie in one hour (day).
		return timeRange{}, false, []timeRange{tr}
	}
	if !tr.from.IsZero() && tr.from.Before(whole.from) {
		parts = append(parts, timeRange{tr.from, whole.from})
	}
	if !tr.to.IsZero() && whole.to.Before(tr.to) {
		parts = append(parts, timeRange{whole.to, tr.to})
	}
	hasWhole = whole.from.IsZero() || whole.to.IsZero() || whole.from.Before(whole.to)
	return whole, hasWhole, parts
}

// previousRange returns the period of the same length just before tr, whose ends must both
// be set: the same number of local days when both ends start a day (a week before a change
// of the clocks is still seven days), the same duration otherwise.
func previousRange(tr timeRange, loc *time.Location) timeRange {
	if isDayStart(tr.from, loc) && isDayStart(tr.to, loc) {
		return timeRange{addDays(tr.from, -int(daysBetween(tr.from, tr.to, loc)), loc), tr.from}
	}
	return timeRange{tr.from.Add(-tr.to.Sub(tr.from)), tr.from}
}

// zonePeriods returns the instants from 1900 to 2200 at which the offset of loc changes,
// and the offset in seconds before the first and after each of them: what a rebuild of
// the rollups gives PostgreSQL instead of a zone name, so that the days and hours it makes
// are those of this calendar, whatever zone data PostgreSQL has. A fixed offset has no
// change and one offset.
func zonePeriods(loc *time.Location) (changes []time.Time, offsets []int64) {
	t := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	limit := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	_, off := t.In(loc).Zone()
	offsets = append(offsets, int64(off))
	for {
		_, end := t.In(loc).ZoneBounds()
		if end.IsZero() || !end.Before(limit) {
			return changes, offsets
		}
		if !end.After(t) {
			// Past its table, Go's zone data computes periods a year at a time, and
			// answers the end of a year as the end of the period that it starts.
			end = t.Add(time.Second)
		}
		if _, off := end.In(loc).Zone(); int64(off) != offsets[len(offsets)-1] {
			changes, offsets = append(changes, end.UTC()), append(offsets, int64(off))
		}
		t = end
	}
}

// floorDiv is a / b rounded down.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
