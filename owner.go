package main

// The owner's view of the whole site: the site's calls per bucket, the calls of every page
// within a range, and the handlers of /api/total and /api/counts that answer them.

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// floorHour returns the start at loc of t's hour.
func floorHour(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, loc)
}

// splitRange splits a range into the whole hours (perDay: days) at loc inside it, and the
// parts at its ends, each within one hour (day). hasWhole is false when no whole hour (day)
// lies inside; an open end has no part.
func splitRange(tr timeRange, loc *time.Location, perDay bool) (whole timeRange, hasWhole bool, parts []timeRange) {
	floor := func(t time.Time) time.Time { return floorHour(t, loc) }
	next := func(t time.Time) time.Time { return t.Add(time.Hour) }
	if perDay {
		floor = func(t time.Time) time.Time { return startOfDay(t, loc) }
		next = func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	}
	whole = tr
	if !tr.from.IsZero() {
		if f := floor(tr.from); !f.Equal(tr.from) {
			whole.from = next(f)
		}
	}
	if !tr.to.IsZero() {
		whole.to = floor(tr.to)
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

// partSum returns the calls of the whole site within a part of one day.
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

// siteBuckets returns the calls of the whole site per unit at the configured offset, empty
// buckets included, over the range; an open end is the bucket of the site's first or last
// call. Whole hours are read from site_hourly, the parts of hours at the ends from calls.
func (r *reader) siteBuckets(unit bucketUnit, tr timeRange) ([]bucket, error) {
	loc := r.s.loc
	if tr.from.IsZero() || tr.to.IsZero() {
		from := tr.from
		if !from.IsZero() {
			from = floorHour(from, loc)
		}
		first, last, ok, err := r.siteSpan(from, tr.to)
		if err != nil {
			return nil, err
		}
		if !ok {
			return []bucket{}, nil
		}
		if tr.from.IsZero() {
			tr.from = unit.floor(first, loc)
		}
		if tr.to.IsZero() {
			tr.to = unit.floor(last, loc).Add(unit.floorStep())
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
	buckets, err := r.siteHours(unit, tr, whole)
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

// rangeCounts returns every path with its calls within a range that is not open at both
// ends, highest first, then by path; paths without a call in it are left out. Whole days
// are read from daily_calls, the parts of days at the ends from calls.
func (r *reader) rangeCounts(tr timeRange) ([]pathCount, error) {
	whole, hasWhole, parts := splitRange(tr, r.s.loc, true)
	m := map[int32]int64{}
	if hasWhole {
		beside, err := r.mostlyHistory(whole)
		if err != nil {
			return nil, err
		}
		read := r.dayCounts
		if beside {
			read = r.dayCountsBeside
		}
		if m, err = read(whole.from, whole.to); err != nil {
			return nil, err
		}
	}
	for _, p := range parts {
		pm, err := r.partCounts(p.from, p.to)
		if err != nil {
			return nil, err
		}
		for id, n := range pm {
			m[id] += n
		}
	}
	ids := make([]int32, 0, len(m))
	for id, n := range m {
		if n > 0 {
			ids = append(ids, id)
		}
	}
	names, err := r.pathNames(ids)
	if err != nil {
		return nil, err
	}
	out := make([]pathCount, 0, len(ids))
	for _, id := range ids {
		if p, ok := names[id]; ok {
			out = append(out, pathCount{p, m[id]})
		}
	}
	sortCounts(out)
	return out, nil
}

// mostlyHistory reports whether a range of whole days holds more days of the history
// (from the first call's day to today) than it leaves out.
func (r *reader) mostlyHistory(days timeRange) (bool, error) {
	first, ok, err := r.firstCall()
	if err != nil || !ok {
		return false, err
	}
	loc := r.s.loc
	start, end := startOfDay(first, loc), startOfDay(time.Now(), loc).AddDate(0, 0, 1)
	from, to := start, end
	if !days.from.IsZero() && days.from.After(from) {
		from = days.from
	}
	if !days.to.IsZero() && days.to.Before(to) {
		to = days.to
	}
	inside := max(0, to.Sub(from))
	return inside > end.Sub(start)-inside, nil
}

// sortCounts orders counts highest first, then by path.
func sortCounts(c []pathCount) {
	slices.SortFunc(c, func(a, b pathCount) int {
		if x := cmp.Compare(b.Count, a.Count); x != 0 {
			return x
		}
		return strings.Compare(a.Path, b.Path)
	})
}

// readRangeCounts reads every path with its calls within a range; a range open at both
// ends is answered from memory, without a read.
func (s *server) readRangeCounts(ctx context.Context, tr timeRange) ([]pathCount, error) {
	if tr.from.IsZero() && tr.to.IsZero() {
		return s.store.counts(), nil
	}
	rd, err := s.store.read(ctx)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	return rd.rangeCounts(tr)
}

// handleCounts answers every path with its count as JSON or CSV, highest first; with
// from= or to=, its calls within that range, paths without any left out.
func (s *server) handleCounts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tr, asCSV, err := parseRangeFormat(q, s.loc)
	if err != nil {
		s.error(w, r, err)
		return
	}
	counts, err := s.readRangeCounts(r.Context(), tr)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if asCSV {
		s.writeCountsCSV(w, counts, tr)
		return
	}
	writeJSON(w, counts)
}

// handleTotal answers the calls of all paths as a bare integer, within from= and to= when
// given; with ?by= the whole site's calls per bucket, as JSON or CSV.
func (s *server) handleTotal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tr, asCSV, err := parseRangeFormat(q, s.loc)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if q.Has("by") {
		s.writeBuckets(w, r, q.Get("by"), tr, asCSV, "total", s.readSiteBuckets)
		return
	}
	if asCSV {
		s.error(w, r, fmt.Errorf("%w: format=csv needs by=hour, day, week or month", errBadRequest))
		return
	}
	n, err := s.readTotal(r.Context(), tr)
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "%d\n", n)
}

// readTotal reads the calls of all paths within a range; without bounds it reads memory only.
func (s *server) readTotal(ctx context.Context, tr timeRange) (int64, error) {
	if tr.from.IsZero() && tr.to.IsZero() {
		return s.store.total(), nil
	}
	rd, err := s.store.read(ctx)
	if err != nil {
		return 0, err
	}
	defer rd.close()
	return rd.siteTotal(tr)
}

// readSiteBuckets reads the whole site's calls per bucket.
func (s *server) readSiteBuckets(ctx context.Context, unit bucketUnit, tr timeRange) ([]bucket, error) {
	rd, err := s.store.read(ctx)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	return rd.siteBuckets(unit, tr)
}
