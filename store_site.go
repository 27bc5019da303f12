package main

// The store's reads of the whole site: its calls per bucket and within a range, from
// site_hourly (whole local hours, keyed by the instant at which each starts, as UTC), with
// the parts of hours at a range's ends counted from calls.

import (
	"database/sql"
	"fmt"
	"sort"
	"time"

	"github.com/lib/pq"
)

// nullUTC is t as a UTC timestamp, the key of site_hourly, or NULL for the zero time.
func nullUTC(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: t.UTC().Format(utcStamp), Valid: true}
}

// fromUTC reads a timestamp without time zone that PostgreSQL answered as a UTC instant.
func fromUTC(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// siteSpan returns the starts of the first and the last hour with calls of the whole site
// within [from, to) (zero: open), and false when there is none.
func (r *reader) siteSpan(from, to time.Time) (first, last time.Time, ok bool, err error) {
	if err := r.fresh(); err != nil {
		return first, last, false, err
	}
	var f, l sql.NullTime
	err = r.s.db.QueryRowContext(r.ctx, `
		SELECT min(hour), max(hour) FROM site_hourly
		WHERE count > 0 AND ($1::timestamp IS NULL OR hour >= $1) AND ($2::timestamp IS NULL OR hour < $2)`,
		nullUTC(from), nullUTC(to)).Scan(&f, &l)
	if err != nil {
		return first, last, false, fmt.Errorf("select site span: %w", err)
	}
	if !f.Valid {
		return first, last, false, nil
	}
	return fromUTC(f.Time), fromUTC(l.Time), true, nil
}

// siteHours returns a bucket for each of starts, empty ones included, holding the calls of
// the whole site in the whole local hours from hours.from to hours.to.
func (r *reader) siteHours(starts []time.Time, hours timeRange) ([]bucket, error) {
	if err := r.fresh(); err != nil {
		return nil, err
	}
	utc := make([]string, len(starts))
	for i, s := range starts {
		utc[i] = s.UTC().Format(utcStamp)
	}
	return r.bucketRows("select site buckets", starts, `
		SELECT width_bucket(hour, $1::timestamp[]), sum(count)::int8 FROM site_hourly
		WHERE hour >= $2::timestamp AND hour < $3::timestamp GROUP BY 1`,
		pq.Array(utc), nullUTC(hours.from), nullUTC(hours.to))
}

// siteSum returns the calls of the whole site in the whole local hours from `from` to `to`
// (zero: open).
func (r *reader) siteSum(from, to time.Time) (int64, error) {
	if err := r.fresh(); err != nil {
		return 0, err
	}
	var n int64
	err := r.s.db.QueryRowContext(r.ctx, `
		SELECT coalesce(sum(count), 0)::int8 FROM site_hourly
		WHERE ($1::timestamp IS NULL OR hour >= $1) AND ($2::timestamp IS NULL OR hour < $2)`,
		nullUTC(from), nullUTC(to)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("select site sum: %w", err)
	}
	return n, nil
}

// partSum returns the calls of the whole site within a part of one local day.
func (r *reader) partSum(part timeRange) (int64, error) {
	m, err := r.partCounts(part.from, part.to)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range m {
		n += c
	}
	return n, nil
}

// siteBuckets returns the calls of the whole site per unit at the owner's zone, empty
// buckets included, over the range; an open end is the bucket of the site's first or last
// call. Whole hours are read from site_hourly, the parts of hours at the ends from calls.
func (r *reader) siteBuckets(unit bucketUnit, tr timeRange) ([]bucket, error) {
	loc := r.s.loc
	if tr.from.IsZero() || tr.to.IsZero() {
		from := tr.from
		if !from.IsZero() {
			from = hourStart(from, loc)
		}
		first, last, ok, err := r.siteSpan(from, tr.to)
		if err != nil {
			return nil, err
		}
		if !ok {
			return []bucket{}, nil
		}
		if tr.from.IsZero() {
			tr.from = unit.floorStart(first, loc)
		}
		if tr.to.IsZero() {
			tr.to = unit.floorEnd(last, loc)
		}
		if !tr.from.Before(tr.to) {
			return []bucket{}, nil
		}
	}
	if err := checkBuckets(unit, tr, loc); err != nil {
		return nil, err
	}
	whole, hasWhole, parts := splitRange(tr, loc, false)
	if !hasWhole {
		whole = timeRange{tr.from, tr.from}
	}
	buckets, err := r.siteHours(unit.starts(tr.from, tr.to, loc), whole)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		n, err := r.partSum(p)
		if err != nil {
			return nil, err
		}
		// The bucket that holds the part: the last one starting at or before it.
		i := sort.Search(len(buckets), func(i int) bool { return buckets[i].Start.After(p.from) }) - 1
		if i >= 0 {
			buckets[i].Count += n
		}
	}
	return buckets, nil
}

// siteTotal returns the calls of the whole site within a range that is not open at both ends.
func (r *reader) siteTotal(tr timeRange) (int64, error) {
	whole, hasWhole, parts := splitRange(tr, r.s.loc, false)
	var n int64
	if hasWhole {
		var err error
		if n, err = r.siteSum(whole.from, whole.to); err != nil {
			return 0, err
		}
	}
	for _, p := range parts {
		m, err := r.partSum(p)
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}
