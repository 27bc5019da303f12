package main

// The store's reads of ranges for the pages: the calls of every path within a range (and
// within the period before it) from daily_calls, with the parts of days at a range's ends
// counted from calls, and a path's calls per bucket. Where a day or a bucket starts is the
// calendar's (calendar.go): PostgreSQL is given local dates and instants only. They sit
// beside store.go, which holds the store itself; the whole site's reads are in store_site.go.

import (
	"cmp"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lib/pq"
)

// nullDate is t's local date at loc for a DATE parameter, or NULL for the zero time.
func nullDate(t time.Time, loc *time.Location) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: localDate(t, loc), Valid: true}
}

// rangeCounts returns every path with its calls within a range that is not open at both
// ends, highest first, then by path; paths without a call in it are left out.
func (r *reader) rangeCounts(tr timeRange) ([]pathCount, error) {
	m, err := r.rangeCountMap(tr)
	if err != nil {
		return nil, err
	}
	pcs, err := r.named(m, nil)
	if err != nil {
		return nil, err
	}
	out := make([]pathCount, len(pcs))
	for i, c := range pcs {
		out[i] = pathCount{c.Path, c.Count}
	}
	return out, nil
}

// pathComparison is a path with its calls within a range and within the period before it.
type pathComparison struct {
	Path     string `json:"path"`
	Count    int64  `json:"count"`
	Previous int64  `json:"previous"`
}

// compareCounts returns every path with calls within tr with them and its calls within
// prev, the period of the same length just before tr (see previousRange), highest first,
// then by path. Two periods of whole days are read in one pass over daily_calls, or, when
// they hold most of the history, as the counts less the days outside them.
func (r *reader) compareCounts(tr, prev timeRange) ([]pathComparison, error) {
	loc := r.s.loc
	var cur, before map[int32]int64
	var err error
	both := timeRange{prev.from, tr.to}
	wholeDays := prev.to.Equal(tr.from) && isDayStart(prev.from, loc) && isDayStart(tr.from, loc) && isDayStart(tr.to, loc)
	beside := false
	if wholeDays {
		if beside, err = r.mostlyHistory(both); err != nil {
			return nil, err
		}
	}
	switch {
	case wholeDays && !beside:
		cur, before, err = r.dayCountsTwo(prev.from, tr.from, tr.to)
	case wholeDays:
		if cur, err = r.dayCountsBeside(both.from, both.to); err != nil {
			return nil, err
		}
		if before, err = r.rangeCountMap(prev); err != nil {
			return nil, err
		}
		for id, n := range before {
			cur[id] -= n
		}
	default:
		if cur, err = r.rangeCountMap(tr); err == nil {
			before, err = r.rangeCountMap(prev)
		}
	}
	if err != nil {
		return nil, err
	}
	return r.named(cur, before)
}

// rangeCountMap returns the calls of each path within a range that is not open at both
// ends. Whole days are read from daily_calls, the parts of days at the ends from calls.
func (r *reader) rangeCountMap(tr timeRange) (map[int32]int64, error) {
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
	return m, nil
}

// named turns the counts of path ids (and those of the period before, which may be nil)
// into paths with a call, highest first, then by path.
func (r *reader) named(m, before map[int32]int64) ([]pathComparison, error) {
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
	out := make([]pathComparison, 0, len(ids))
	for _, id := range ids {
		if p, ok := names[id]; ok {
			out = append(out, pathComparison{p, m[id], before[id]})
		}
	}
	slices.SortFunc(out, func(a, b pathComparison) int {
		if x := cmp.Compare(b.Count, a.Count); x != 0 {
			return x
		}
		return strings.Compare(a.Path, b.Path)
	})
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
	start, end := dayStart(first, loc), addDays(time.Now(), 1, loc)
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

// dayCounts returns the calls of each path in the whole local days from `from` to `to`
// (zero: open), paths without calls left out.
func (r *reader) dayCounts(from, to time.Time) (map[int32]int64, error) {
	if err := r.fresh(); err != nil {
		return nil, err
	}
	rows, err := r.s.db.QueryContext(r.ctx, `
		SELECT path_id, sum(count)::int8 FROM daily_calls
		WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day < $2)
		GROUP BY 1`, nullDate(from, r.s.loc), nullDate(to, r.s.loc))
	if err != nil {
		return nil, fmt.Errorf("select counts per day range: %w", err)
	}
	return scanPathCounts(rows, map[int32]int64{}, "select counts per day range")
}

// dayCountsTwo returns the calls of each path in the whole local days from mid to to, and
// in those from from to mid, in one pass over the days from from to to.
func (r *reader) dayCountsTwo(from, mid, to time.Time) (late, early map[int32]int64, err error) {
	if err := r.fresh(); err != nil {
		return nil, nil, err
	}
	loc := r.s.loc
	rows, err := r.s.db.QueryContext(r.ctx, `
		SELECT path_id, coalesce(sum(count) FILTER (WHERE day >= $2::date), 0)::int8, coalesce(sum(count) FILTER (WHERE day < $2::date), 0)::int8
		FROM daily_calls WHERE day >= $1::date AND day < $3::date
		GROUP BY 1`, localDate(from, loc), localDate(mid, loc), localDate(to, loc))
	if err != nil {
		return nil, nil, fmt.Errorf("select counts of two day ranges: %w", err)
	}
	defer rows.Close()
	late, early = map[int32]int64{}, map[int32]int64{}
	for rows.Next() {
		var id int32
		var a, b int64
		if err := rows.Scan(&id, &a, &b); err != nil {
			return nil, nil, fmt.Errorf("select counts of two day ranges: %w", err)
		}
		late[id], early[id] = a, b
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("select counts of two day ranges: %w", err)
	}
	return late, early, nil
}

// partCounts returns the calls of each path from `from` to `to`, which lie within one local
// day, counting calls only of the paths that the daily rollup shows called on that day.
func (r *reader) partCounts(from, to time.Time) (map[int32]int64, error) {
	if err := r.fresh(); err != nil {
		return nil, err
	}
	rows, err := r.s.db.QueryContext(r.ctx, `
		SELECT d.path_id, x.n FROM daily_calls d CROSS JOIN LATERAL (
			SELECT count(*) AS n FROM calls c WHERE c.path_id = d.path_id AND c.timestamp >= $2 AND c.timestamp < $3
		) x
		WHERE d.day = $1::date AND x.n > 0`, localDate(from, r.s.loc), from, to)
	if err != nil {
		return nil, fmt.Errorf("select counts of part of a day: %w", err)
	}
	return scanPathCounts(rows, map[int32]int64{}, "select counts of part of a day")
}

// scanPathCounts adds rows of (path id, count) to m.
func scanPathCounts(rows *sql.Rows, m map[int32]int64, op string) (map[int32]int64, error) {
	defer rows.Close()
	for rows.Next() {
		var id int32
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		m[id] += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return m, nil
}

// dayCountsBeside returns the calls of each path in the whole local days from `from` to
// `to` (zero: open) as its count less its calls on the days outside them, in one snapshot of
// the rollups: the cheaper read when the range holds most of the history.
func (r *reader) dayCountsBeside(from, to time.Time) (map[int32]int64, error) {
	if err := r.fresh(); err != nil {
		return nil, err
	}
	rows, err := r.s.db.QueryContext(r.ctx, `
		SELECT c.path_id, c.count - coalesce(o.n, 0) FROM path_counts c LEFT JOIN (
			SELECT path_id, sum(count)::int8 AS n FROM (
				SELECT path_id, count FROM daily_calls WHERE $1::date IS NOT NULL AND day < $1
				UNION ALL
				SELECT path_id, count FROM daily_calls WHERE $2::date IS NOT NULL AND day >= $2
			) x GROUP BY 1
		) o USING (path_id)`, nullDate(from, r.s.loc), nullDate(to, r.s.loc))
	if err != nil {
		return nil, fmt.Errorf("select counts beside a day range: %w", err)
	}
	return scanPathCounts(rows, map[int32]int64{}, "select counts beside a day range")
}

// dateArray is the local dates at loc of the starts of buckets, for width_bucket over days.
func dateArray(starts []time.Time, loc *time.Location) any {
	out := make([]string, len(starts))
	for i, s := range starts {
		out[i] = localDate(s, loc)
	}
	return pq.Array(out)
}

// instantArray is the starts of buckets as instants, for width_bucket over call times.
func instantArray(starts []time.Time) any {
	out := make([]string, len(starts))
	for i, s := range starts {
		out[i] = s.Format(time.RFC3339Nano)
	}
	return pq.Array(out)
}

// sparks returns the calls of each of the paths ids per bucket of starts (bucket starts of
// whole local days) in the days from the first start to `to`, keyed by path id.
func (r *reader) sparks(ids []int32, starts []time.Time, to time.Time) (map[int32][]int64, error) {
	if err := r.fresh(); err != nil {
		return nil, err
	}
	loc := r.s.loc
	arr := make([]int64, len(ids))
	for i, id := range ids {
		arr[i] = int64(id)
	}
	rows, err := r.s.db.QueryContext(r.ctx, `
		SELECT path_id, width_bucket(day, $2::date[]), sum(count)::int8 FROM daily_calls
		WHERE path_id = ANY($1::int4[]) AND day >= $3::date AND day < $4::date
		GROUP BY 1, 2`, pq.Array(arr), dateArray(starts, loc), localDate(starts[0], loc), localDate(to, loc))
	if err != nil {
		return nil, fmt.Errorf("select sparklines: %w", err)
	}
	defer rows.Close()
	out := map[int32][]int64{}
	for rows.Next() {
		var id int32
		var i int
		var n int64
		if err := rows.Scan(&id, &i, &n); err != nil {
			return nil, fmt.Errorf("select sparklines: %w", err)
		}
		if out[id] == nil {
			out[id] = make([]int64, len(starts))
		}
		if i >= 1 && i <= len(starts) {
			out[id][i-1] += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select sparklines: %w", err)
	}
	return out, nil
}

// bucketRows runs query, whose rows are (1-based index into starts, count), and returns a
// bucket for every start with its count, empty ones included.
func (r *reader) bucketRows(op string, starts []time.Time, query string, args ...any) ([]bucket, error) {
	rows, err := r.s.db.QueryContext(r.ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	out := make([]bucket, len(starts))
	for i, s := range starts {
		out[i].Start = s
	}
	for rows.Next() {
		var i int
		var n int64
		if err := rows.Scan(&i, &n); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if i >= 1 && i <= len(out) {
			out[i-1].Count += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return out, nil
}

// span closes the open ends of a range of a path's history: an open start is the start of
// the hour (day) of the first call in the range, an open end the end of the hour (day) of
// the last. ok is false when an open range holds no call.
func (r *reader) span(id int32, unit bucketUnit, tr timeRange) (timeRange, bool, error) {
	loc := r.s.loc
	if !tr.from.IsZero() && !tr.to.IsZero() {
		return tr, true, nil
	}
	var first, last sql.NullTime
	err := r.s.db.QueryRowContext(r.ctx, `
		SELECT (SELECT min(timestamp) FROM calls WHERE path_id = $1 AND ($2::timestamptz IS NULL OR timestamp >= $2)),
		       (SELECT max(timestamp) FROM calls WHERE path_id = $1 AND ($3::timestamptz IS NULL OR timestamp < $3))`,
		id, nullTime(tr.from), nullTime(tr.to)).Scan(&first, &last)
	if err != nil {
		return tr, false, fmt.Errorf("select history span: %w", err)
	}
	if !first.Valid || !last.Valid {
		return tr, false, nil
	}
	if tr.from.IsZero() {
		tr.from = unit.floorStart(first.Time, loc)
	}
	if tr.to.IsZero() {
		tr.to = unit.floorEnd(last.Time, loc)
	}
	return tr, tr.from.Before(tr.to), nil
}

// buckets returns the calls of a path per unit at the owner's zone, empty buckets included,
// over the range; an open end is the hour (day) of the path's first or last call. Whole
// local days are read from daily_calls, hours and other ranges from calls. A range of more
// than maxBuckets buckets is refused with errBadRequest before any bucket is read.
func (r *reader) buckets(id int32, unit bucketUnit, tr timeRange) ([]bucket, error) {
	loc := r.s.loc
	tr, ok, err := r.span(id, unit, tr)
	if err != nil {
		return nil, err
	}
	if !ok {
		return []bucket{}, nil
	}
	if err := checkBuckets(unit, tr, loc); err != nil {
		return nil, err
	}
	starts := unit.starts(tr.from, tr.to, loc)
	if unit.name == "hour" || !isDayStart(tr.from, loc) || !isDayStart(tr.to, loc) {
		return r.bucketRows("select buckets", starts, `
			SELECT width_bucket(timestamp, $2::timestamptz[]), count(*) FROM calls
			WHERE path_id = $1 AND timestamp >= $3 AND timestamp < $4 GROUP BY 1`,
			id, instantArray(starts), tr.from, tr.to)
	}
	if err := r.fresh(); err != nil {
		return nil, err
	}
	return r.bucketRows("select buckets", starts, `
		SELECT width_bucket(day, $2::date[]), sum(count)::int8 FROM daily_calls
		WHERE path_id = $1 AND day >= $3::date AND day < $4::date GROUP BY 1`,
		id, dateArray(starts, loc), localDate(tr.from, loc), localDate(tr.to, loc))
}

// pathNames returns the path of each id, reading those that are not in memory (paths
// another daemon added) from the database and remembering them.
func (r *reader) pathNames(ids []int32) (map[int32]string, error) {
	out := r.s.names()
	var missing []int64
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			missing = append(missing, int64(id))
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	rows, err := r.s.db.QueryContext(r.ctx, `
		SELECT p.id, p.path, coalesce(c.count, 0) FROM paths p LEFT JOIN path_counts c ON c.path_id = p.id
		WHERE p.id = ANY($1::int4[])`, pq.Array(missing))
	if err != nil {
		return nil, fmt.Errorf("select path names: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int32
		var p string
		var n int64
		if err := rows.Scan(&id, &p, &n); err != nil {
			return nil, fmt.Errorf("select path names: %w", err)
		}
		r.s.remember(p, id, n)
		out[id] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select path names: %w", err)
	}
	return out, nil
}

// names returns the path of every id in memory.
func (s *store) names() map[int32]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[int32]string, len(s.paths))
	for p, id := range s.paths {
		out[id] = p
	}
	return out
}

// total returns the number of calls of all paths, from memory.
func (s *store) total() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	for _, c := range s.totals {
		n += c
	}
	return n
}
