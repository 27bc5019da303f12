package main

import (
	"fmt"
	"time"
)

// bucketUnit is a size of history buckets; its name is the `by=` value, the noun of the
// pages, and the unit of PostgreSQL's date_trunc.
type bucketUnit struct {
	name string
}

// bucketUnits are the bucket sizes, finest first.
var bucketUnits = []bucketUnit{{"hour"}, {"day"}, {"week"}, {"month"}}

// parseUnit returns the unit named by a `by=` value.
func parseUnit(s string) (bucketUnit, error) {
	for _, u := range bucketUnits {
		if u.name == s {
			return u, nil
		}
	}
	return bucketUnit{}, fmt.Errorf("%w: by=%q is not one of hour, day, week, month", errBadRequest, s)
}

// coarser returns the next larger unit, and false for the largest.
func (u bucketUnit) coarser() (bucketUnit, bool) {
	for i, v := range bucketUnits {
		if v == u && i+1 < len(bucketUnits) {
			return bucketUnits[i+1], true
		}
	}
	return u, false
}

// floor returns the start at loc of t's hour for hourly buckets, and of t's day for the
// others (PostgreSQL truncates days to weeks and months).
func (u bucketUnit) floor(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	h := 0
	if u.name == "hour" {
		h = t.Hour()
	}
	return time.Date(t.Year(), t.Month(), t.Day(), h, 0, 0, 0, loc)
}

// floorStep is the length of what floor rounds to: an hour or a day.
func (u bucketUnit) floorStep() time.Duration {
	if u.name == "hour" {
		return time.Hour
	}
	return 24 * time.Hour
}

// count returns how many buckets a history from `from` to `to` (exclusive) holds at loc.
// It counts in whole numbers, so that ranges of thousands of years do not overflow.
func (u bucketUnit) count(from, to time.Time, loc *time.Location) int64 {
	a, b := from.In(loc), to.Add(-time.Microsecond).In(loc)
	days := func(t time.Time) int64 {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Unix() / 86400
	}
	switch u.name {
	case "hour":
		return (days(b)*24 + int64(b.Hour())) - (days(a)*24 + int64(a.Hour())) + 1
	case "day":
		return days(b) - days(a) + 1
	case "week":
		// 1970-01-01 was a Thursday: shift so that weeks start on Mondays, as in PostgreSQL.
		return floorDiv(days(b)+3, 7) - floorDiv(days(a)+3, 7) + 1
	default:
		return (int64(b.Year())*12 + int64(b.Month())) - (int64(a.Year())*12 + int64(a.Month())) + 1
	}
}

// label formats a bucket start for an axis label.
func (u bucketUnit) label(t time.Time) string {
	switch u.name {
	case "hour":
		return t.Format("Jan 2 15:04")
	case "month":
		return t.Format("Jan 2006")
	default:
		return t.Format("Jan 2")
	}
}

// tick formats a bucket start for a label under the plot's x axis: as label does, but an
// hour is its time of day alone, and the day where it starts.
func (u bucketUnit) tick(t time.Time) string {
	if u.name == "hour" {
		if t.Hour() == 0 {
			return t.Format("Jan 2")
		}
		return t.Format("15:04")
	}
	return u.label(t)
}

// starts returns the start of every bucket of u from the one holding from to the one
// holding the instant before to, at loc, as PostgreSQL's date_trunc makes them (weeks
// start on Mondays, months on the first).
func (u bucketUnit) starts(from, to time.Time, loc *time.Location) []time.Time {
	t := u.trunc(from, loc)
	var out []time.Time
	for ; t.Before(to); t = u.next(t) {
		out = append(out, t)
	}
	return out
}

// trunc returns the start at loc of the bucket of u that holds t.
func (u bucketUnit) trunc(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	switch u.name {
	case "hour":
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, loc)
	case "week":
		// Go's weeks start on Sunday (0); PostgreSQL's on Monday.
		back := (int(t.Weekday()) + 6) % 7
		return time.Date(t.Year(), t.Month(), t.Day()-back, 0, 0, 0, 0, loc)
	case "month":
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	default:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	}
}

// next returns the start of the bucket after the one starting at t.
func (u bucketUnit) next(t time.Time) time.Time {
	switch u.name {
	case "hour":
		return t.Add(time.Hour)
	case "week":
		return t.AddDate(0, 0, 7)
	case "month":
		return t.AddDate(0, 1, 0)
	default:
		return t.AddDate(0, 0, 1)
	}
}
