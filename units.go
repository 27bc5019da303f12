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

// label formats a bucket start for an axis label; an hour that the clock shows twice (on an
// autumn night) names its zone's abbreviation, "Oct 25 02:00 CET".
func (u bucketUnit) label(t time.Time) string {
	switch u.name {
	case "hour":
		return t.Format("Jan 2 15:04") + shownTwice(t)
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
		return t.Format("15:04") + shownTwice(t)
	}
	return u.label(t)
}

// shownTwice returns " CEST" (the abbreviation of t's offset) when t's hour is shown twice on
// the clock of t's zone, and "" otherwise.
func shownTwice(t time.Time) string {
	for _, d := range []time.Duration{-time.Hour, time.Hour} {
		if o := t.Add(d).In(t.Location()); o.Hour() == t.Hour() && o.Day() == t.Day() {
			return " " + t.Format("MST")
		}
	}
	return ""
}
