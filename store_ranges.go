package main

// The store's reads of ranges: the whole site's calls per bucket from site_hourly, and the
// calls of every path within a range from daily_calls, with the parts of days at a range's
// ends counted from calls. They sit beside store.go, which holds the store itself.

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// nullLocal is t's wall clock at loc for a TIMESTAMP or DATE parameter, or NULL for the zero time.
func nullLocal(t time.Time, loc *time.Location) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: localTime(t, loc), Valid: true}
}

// siteSpan returns the first and the last local hour with calls of the whole site within
// [from, to) (zero: open), and false when there is none.
func (r *reader) siteSpan(from, to time.Time) (first, last time.Time, ok bool, err error) {
	if err := r.fresh(); err != nil {
		return first, last, false, err
	}
	loc := r.s.loc
	var f, l sql.NullTime
	err = r.s.db.QueryRowContext(r.ctx, `
		SELECT min(hour), max(hour) FROM site_hourly
		WHERE count > 0 AND ($1::timestamp IS NULL OR hour >= $1) AND ($2::timestamp IS NULL OR hour < $2)`,
		nullLocal(from, loc), nullLocal(to, loc)).Scan(&f, &l)
	if err != nil {
		return first, last, false, fmt.Errorf("select site span: %w", err)
	}
	if !f.Valid {
		return first, last, false, nil
	}
	return wallClock(f.Time, loc), wallClock(l.Time, loc), true, nil
}

// siteBucketsSQL sums the site's whole hours from $2 to $3 (local) into buckets of unit $1,
// every bucket from the one holding $4 to the one holding the instant before $5.
const siteBucketsSQL = `
	WITH b AS (
		SELECT date_trunc($1, hour) AS start, sum(count)::int8 AS n FROM site_hourly
		WHERE hour >= $2::timestamp AND hour < $3::timestamp GROUP BY 1
	)
	SELECT g.start, coalesce(b.n, 0)
	FROM generate_series(date_trunc($1, $4::timestamp), date_trunc($1, $5::timestamp - interval '1 microsecond'), ('1 ' || $1)::interval) AS g (start)
	LEFT JOIN b USING (start)
	ORDER BY g.start`

// siteHours returns the buckets of unit covering span, empty ones included, holding the
// calls of the whole site in the whole local hours from hours.from to hours.to.
func (r *reader) siteHours(unit bucketUnit, span, hours timeRange) ([]bucket, error) {
	if err := r.fresh(); err != nil {
		return nil, err
	}
	loc := r.s.loc
	rows, err := r.s.db.QueryContext(r.ctx, siteBucketsSQL, unit.name,
		localTime(hours.from, loc), localTime(hours.to, loc), localTime(span.from, loc), localTime(span.to, loc))
	if err != nil {
		return nil, fmt.Errorf("select site buckets: %w", err)
	}
	defer rows.Close()
	out := []bucket{}
	for rows.Next() {
		var b bucket
		if err := rows.Scan(&b.Start, &b.Count); err != nil {
			return nil, fmt.Errorf("select site buckets: %w", err)
		}
		b.Start = wallClock(b.Start, loc)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select site buckets: %w", err)
	}
	return out, nil
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
		nullLocal(from, r.s.loc), nullLocal(to, r.s.loc)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("select site sum: %w", err)
	}
	return n, nil
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
		GROUP BY 1`, nullLocal(from, r.s.loc), nullLocal(to, r.s.loc))
	if err != nil {
		return nil, fmt.Errorf("select counts per day range: %w", err)
	}
	return scanPathCounts(rows, map[int32]int64{}, "select counts per day range")
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
		WHERE d.day = $1::date AND x.n > 0`, localTime(from, r.s.loc), from, to)
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

// sparks returns the calls of each of the paths ids per unit in the whole local days of
// tr, non-empty buckets only, keyed by path id and bucket start.
func (r *reader) sparks(ids []int32, unit bucketUnit, tr timeRange) (map[int32]map[time.Time]int64, error) {
	if err := r.fresh(); err != nil {
		return nil, err
	}
	loc := r.s.loc
	arr := make([]int64, len(ids))
	for i, id := range ids {
		arr[i] = int64(id)
	}
	rows, err := r.s.db.QueryContext(r.ctx, `
		SELECT path_id, date_trunc($2, day::timestamp), sum(count)::int8 FROM daily_calls
		WHERE path_id = ANY($1::int4[]) AND day >= $3::date AND day < $4::date
		GROUP BY 1, 2`, pq.Array(arr), unit.name, localTime(tr.from, loc), localTime(tr.to, loc))
	if err != nil {
		return nil, fmt.Errorf("select sparklines: %w", err)
	}
	defer rows.Close()
	out := map[int32]map[time.Time]int64{}
	for rows.Next() {
		var id int32
		var start time.Time
		var n int64
		if err := rows.Scan(&id, &start, &n); err != nil {
			return nil, fmt.Errorf("select sparklines: %w", err)
		}
		if out[id] == nil {
			out[id] = map[time.Time]int64{}
		}
		out[id][wallClock(start, loc)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select sparklines: %w", err)
	}
	return out, nil
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

// wallClock puts a wall-clock time that PostgreSQL answered (as UTC) at loc.
func wallClock(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, loc)
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
		) o USING (path_id)`, nullLocal(from, r.s.loc), nullLocal(to, r.s.loc))
	if err != nil {
		return nil, fmt.Errorf("select counts beside a day range: %w", err)
	}
	return scanPathCounts(rows, map[int32]int64{}, "select counts beside a day range")
}
