package main

import (
	"cmp"
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// schema is applied at every start.
//
//go:embed schema.sql
var schema string

// errNotFound is returned for a path that has no row in paths.
var errNotFound = errors.New("not found")

// queryTimeout bounds every single query.
const queryTimeout = 10 * time.Second

// schemaLockID serializes schema application between daemons sharing a database.
const schemaLockID = 7_215_032_711

// openDB connects to PostgreSQL, retrying until cfg.ConnectTimeout has passed, so that a
// daemon started together with its database waits for it.
func openDB(ctx context.Context, cfg DBConfig, log *slog.Logger) (*sql.DB, error) {
	connector, err := pq.NewConnectorConfig(pq.Config{
		Host:            cfg.Host,
		Port:            uint16(cfg.Port),
		User:            cfg.Username,
		Password:        cfg.Password,
		Database:        cfg.Database,
		SSLMode:         pq.SSLMode(cfg.SSLMode),
		ConnectTimeout:  5 * time.Second,
		ApplicationName: "oxitraffic",
		TZ:              "UTC",
		// One round trip per parameterized statement instead of two.
		BinaryParameters: true,
	})
	if err != nil {
		return nil, fmt.Errorf("database settings: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)

	where := fmt.Sprintf("database %s on %s port %d", cfg.Database, cfg.Host, cfg.Port)
	deadline := time.Now().Add(time.Duration(cfg.ConnectTimeout))
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = db.PingContext(pctx)
		cancel()
		if err == nil {
			return db, nil
		}
		// PostgreSQL answered but refused (wrong password, no such database): waiting
		// will not help. It may still be starting up (class 57, operator intervention).
		if pqErr := (*pq.Error)(nil); errors.As(err, &pqErr) && pqErr.Code.Class() != "57" {
			db.Close()
			return nil, fmt.Errorf("PostgreSQL refused the connection (%s): %v", where, err)
		}
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			db.Close()
			return nil, fmt.Errorf("PostgreSQL could not be reached (%s) within %s: %v", where, time.Duration(cfg.ConnectTimeout), err)
		}
		log.Warn("waiting for PostgreSQL", "where", where, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// applySchema runs schema.sql in one transaction, under a lock so that two starts do not race.
func applySchema(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockID); err != nil {
		return fmt.Errorf("apply schema: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	return nil
}

// store holds every query of OxiTraffic, the call writer, and in memory every known path
// with its number of calls, so that /call and /api/counts need no query. The numbers are
// raised after each COMMIT, before the calls are acknowledged.
type store struct {
	db     *sql.DB
	w      *writer
	offset int // the UTC offset in seconds

	mu     sync.RWMutex
	paths  map[string]int32
	totals map[int32]int64
}

// newStore loads the known paths and starts the call writer; offset is the configured UTC
// offset in seconds.
func newStore(ctx context.Context, db *sql.DB, queueSize, offset int, log *slog.Logger) (*store, error) {
	s := &store{db: db, paths: map[string]int32{}, totals: map[int32]int64{}, offset: offset}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT p.id, p.path, coalesce(c.count, 0) FROM paths p LEFT JOIN path_counts c ON c.path_id = p.id")
	if err != nil {
		return nil, fmt.Errorf("load paths: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int32
		var p string
		var n int64
		if err := rows.Scan(&id, &p, &n); err != nil {
			return nil, fmt.Errorf("load paths: %w", err)
		}
		s.paths[p], s.totals[id] = id, n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load paths: %w", err)
	}
	if s.w, err = newWriter(ctx, db, queueSize, offset, s.committed, log); err != nil {
		return nil, err
	}
	return s, nil
}

// knownPath returns the id of a path from the cache, without touching the database.
func (s *store) knownPath(path string) (int32, bool) {
	s.mu.RLock()
	id, ok := s.paths[path]
	s.mu.RUnlock()
	return id, ok
}

// pathID returns the id of a path, or errNotFound.
func (s *store) pathID(ctx context.Context, path string) (int32, error) {
	if id, ok := s.knownPath(path); ok {
		return id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var id int32
	var n int64
	err := s.db.QueryRowContext(ctx, `
		SELECT p.id, coalesce(c.count, 0) FROM paths p LEFT JOIN path_counts c ON c.path_id = p.id
		WHERE p.path = $1`, path).Scan(&id, &n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("select path: %w", err)
	}
	s.remember(path, id, n)
	return id, nil
}

// remember puts a path and its number of calls into the cache.
func (s *store) remember(path string, id int32, n int64) {
	s.mu.Lock()
	s.paths[path] = id
	s.totals[id] = n
	s.mu.Unlock()
}

// committed adds the calls of a written batch to the numbers in memory.
func (s *store) committed(calls []pendingCall) {
	s.mu.Lock()
	for _, c := range calls {
		s.totals[int32(c.pathID)]++
	}
	s.mu.Unlock()
}

// addPath stores a verified path, or finds the row that is already there, and returns its id.
func (s *store) addPath(ctx context.Context, path string) (int32, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var id int32
	err := s.db.QueryRowContext(ctx, `
		WITH ins AS (INSERT INTO paths (path) VALUES ($1) ON CONFLICT (path) DO NOTHING RETURNING id)
		SELECT id FROM ins UNION ALL SELECT id FROM paths WHERE path = $1 LIMIT 1`, path).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert path: %w", err)
	}
	s.remember(path, id, 0)
	return id, nil
}

// pathCount is one path with its number of calls.
type pathCount struct {
	Path  string `json:"path"`
	Count int64  `json:"count"`
}

// counts returns every path with its number of calls, highest first, then by path.
func (s *store) counts() []pathCount {
	s.mu.RLock()
	out := make([]pathCount, 0, len(s.paths))
	for p, id := range s.paths {
		out = append(out, pathCount{p, s.totals[id]})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b pathCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out
}

// count returns the number of calls of a path, or errNotFound.
func (s *store) count(ctx context.Context, path string) (int64, error) {
	id, err := s.pathID(ctx, path)
	if err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.totals[id], nil
}

// timeRange bounds a history; a zero end is open.
type timeRange struct {
	from, to time.Time
}

// nullTime turns the zero time into SQL NULL.
func nullTime(t time.Time) sql.NullTime {
	return sql.NullTime{Time: t, Valid: !t.IsZero()}
}

// history calls fn with the time of each call of a path in the range, oldest first.
// It returns errNotFound for an unknown path before fn is first called.
func (s *store) history(ctx context.Context, path string, tr timeRange, fn func(time.Time) error) error {
	id, err := s.pathID(ctx, path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		SELECT timestamp FROM calls
		WHERE path_id = $1 AND ($2::timestamptz IS NULL OR timestamp >= $2) AND ($3::timestamptz IS NULL OR timestamp < $3)
		ORDER BY timestamp`, id, nullTime(tr.from), nullTime(tr.to))
	if err != nil {
		return fmt.Errorf("select history: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t time.Time
		if err := rows.Scan(&t); err != nil {
			return fmt.Errorf("select history: %w", err)
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("select history: %w", err)
	}
	return nil
}

// bucket is the number of calls in one interval starting at Start.
type bucket struct {
	Start time.Time
	Count int64
}

// bucketUnits are the bucket sizes of histories, as PostgreSQL's date_trunc names them.
var bucketUnits = map[string]time.Duration{
	"hour":  time.Hour,
	"day":   24 * time.Hour,
	"week":  7 * 24 * time.Hour,
	"month": 31 * 24 * time.Hour,
}

// bucketsTail turns the CTE b (start, n) of non-empty buckets into every bucket from the
// first to the last, or over the range when it is given ($3 and $4 as local times).
const bucketsTail = `,
	r AS (
		SELECT coalesce(date_trunc($2, $3::timestamp), min(start)) AS lo,
		       coalesce(date_trunc($2, $4::timestamp - interval '1 microsecond'), max(start)) AS hi
		FROM b
	)
	SELECT g.start, coalesce(b.n, 0)
	FROM r CROSS JOIN LATERAL generate_series(r.lo, r.hi, ('1 ' || $2)::interval) AS g (start)
	LEFT JOIN b USING (start)
	ORDER BY g.start`

// bucketsFromRollup counts calls per bucket from the daily rollup; the range must be whole local days.
const bucketsFromRollup = `
	WITH b AS (
		SELECT date_trunc($2, day::timestamp) AS start, sum(count)::int8 AS n
		FROM daily_calls
		WHERE path_id = $1 AND ($3::timestamp IS NULL OR day >= $3::date) AND ($4::timestamp IS NULL OR day < $4::date)
		GROUP BY 1
	)` + bucketsTail

// bucketsFromCalls counts calls per bucket from calls, for hours and ranges that are not whole days.
const bucketsFromCalls = `
	WITH b AS (
		SELECT date_trunc($2, (timestamp::timestamptz + $5::interval) AT TIME ZONE 'UTC') AS start, count(*) AS n
		FROM calls
		WHERE path_id = $1
		  AND ($3::timestamp IS NULL OR timestamp >= ($3::timestamp - $5::interval) AT TIME ZONE 'UTC')
		  AND ($4::timestamp IS NULL OR timestamp < ($4::timestamp - $5::interval) AT TIME ZONE 'UTC')
		GROUP BY 1
	)` + bucketsTail

// buckets returns the calls of a path per unit ("hour", "day", "week" or "month") at the
// configured offset, empty buckets included, within the range; errNotFound for an unknown path.
func (s *store) buckets(ctx context.Context, path, unit string, tr timeRange, loc *time.Location) ([]bucket, error) {
	id, err := s.pathID(ctx, path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	query, args := bucketsFromRollup, []any{id, unit, localTime(tr.from, loc), localTime(tr.to, loc)}
	if unit == "hour" || !isMidnight(tr.from, loc) || !isMidnight(tr.to, loc) {
		query, args = bucketsFromCalls, append(args, offsetInterval(s.offset))
	} else if err := s.w.flushRollups(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select buckets: %w", err)
	}
	defer rows.Close()
	out := []bucket{}
	for rows.Next() {
		var b bucket
		if err := rows.Scan(&b.Start, &b.Count); err != nil {
			return nil, fmt.Errorf("select buckets: %w", err)
		}
		// PostgreSQL answers local wall-clock times: put them at the offset.
		y, m, d := b.Start.Date()
		b.Start = time.Date(y, m, d, b.Start.Hour(), b.Start.Minute(), 0, 0, loc)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select buckets: %w", err)
	}
	return out, nil
}

// localTime is t's wall clock at loc as a timestamp without time zone, or NULL for the zero time.
func localTime(t time.Time, loc *time.Location) any {
	if t.IsZero() {
		return nil
	}
	return t.In(loc).Format("2006-01-02 15:04:05.999999")
}

// isMidnight reports whether t is zero or the start of a day at loc.
func isMidnight(t time.Time, loc *time.Location) bool {
	if t.IsZero() {
		return true
	}
	t = t.In(loc)
	return t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 && t.Nanosecond() == 0
}

// countBefore returns how many calls of path were made before the start of day at loc.
func (s *store) countBefore(ctx context.Context, id int32, day time.Time, loc *time.Location) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if err := s.w.flushRollups(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT coalesce(sum(count), 0)::int8 FROM daily_calls WHERE path_id = $1 AND day < $2::date",
		id, day.In(loc).Format(time.DateOnly)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("select count before: %w", err)
	}
	return n, nil
}

// pathStats returns the number of calls of a path and the time of its first call.
func (s *store) pathStats(ctx context.Context, id int32) (int64, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if err := s.w.flushRollups(ctx); err != nil {
		return 0, time.Time{}, err
	}
	var n int64
	var first time.Time
	err := s.db.QueryRowContext(ctx, "SELECT count, first_call FROM path_counts WHERE path_id = $1", id).Scan(&n, &first)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("select path stats: %w", err)
	}
	return n, first, nil
}

// firstCall returns the time of the first call of all, and false when there is none.
func (s *store) firstCall(ctx context.Context) (time.Time, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if err := s.w.flushRollups(ctx); err != nil {
		return time.Time{}, false, err
	}
	var t sql.NullTime
	if err := s.db.QueryRowContext(ctx, "SELECT min(first_call) FROM path_counts").Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("select first call: %w", err)
	}
	return t.Time, t.Valid, nil
}

// offsetInterval renders an offset in seconds as a PostgreSQL interval.
func offsetInterval(secs int) string {
	return fmt.Sprintf("%d seconds", secs)
}

// syncRollups checks the rollups against calls and makes them agree. Never made (a database
// of the original OxiTraffic) or made for another UTC offset, they are rebuilt; otherwise
// only the paths whose number of calls disagrees are counted again: those a crashed
// daemon's last second left short, or whose calls something else wrote.
func syncRollups(ctx context.Context, db *sql.DB, offset int, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("check rollups: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockID); err != nil {
		return fmt.Errorf("check rollups: lock: %w", err)
	}
	var stored sql.NullString
	var hasCalls bool
	err = tx.QueryRowContext(ctx, `
		SELECT (SELECT value FROM oxitraffic_meta WHERE key = 'rollup_offset'), EXISTS (SELECT 1 FROM calls)`).Scan(&stored, &hasCalls)
	if err != nil {
		return fmt.Errorf("check rollups: %w", err)
	}
	start := time.Now()
	day := `((timestamp::timestamptz + $1::interval) AT TIME ZONE 'UTC')::date`
	type statement struct {
		query string
		args  []any
	}
	var statements []statement
	if stored.Valid && stored.String == strconv.Itoa(offset) {
		var ids []int64
		rows, err := tx.QueryContext(ctx, `
			SELECT path_id FROM (SELECT path_id, count(*) AS n FROM calls GROUP BY 1) c
			FULL JOIN path_counts p USING (path_id) WHERE c.n IS DISTINCT FROM p.count`)
		if err != nil {
			return fmt.Errorf("check rollups: %w", err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("check rollups: %w", err)
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("check rollups: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		log.Info("counting again the rollups of paths whose calls disagree with them", "paths", len(ids))
		statements = []statement{
			{"DELETE FROM daily_calls WHERE path_id = ANY($1)", []any{pq.Array(ids)}},
			{"DELETE FROM path_counts WHERE path_id = ANY($1)", []any{pq.Array(ids)}},
			{"INSERT INTO daily_calls (path_id, day, count) SELECT path_id, " + day + `, count(*) FROM calls
			  WHERE path_id = ANY($2) GROUP BY 1, 2`, []any{offsetInterval(offset), pq.Array(ids)}},
			{`INSERT INTO path_counts (path_id, count, first_call) SELECT path_id, count(*), min(timestamp) FROM calls
			  WHERE path_id = ANY($1) GROUP BY 1`, []any{pq.Array(ids)}},
		}
	} else {
		if hasCalls {
			log.Info("rebuilding the rollups from calls", "utc_offset_seconds", offset)
		}
		statements = []statement{
			{"TRUNCATE daily_calls, path_counts", nil},
			{"INSERT INTO daily_calls (path_id, day, count) SELECT path_id, " + day + ", count(*) FROM calls GROUP BY 1, 2",
				[]any{offsetInterval(offset)}},
			{"INSERT INTO path_counts (path_id, count, first_call) SELECT path_id, count(*), min(timestamp) FROM calls GROUP BY 1", nil},
			{`INSERT INTO oxitraffic_meta (key, value) VALUES ('rollup_offset', $1)
			  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, []any{strconv.Itoa(offset)}},
		}
	}
	for _, st := range statements {
		if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
			return fmt.Errorf("rebuild rollups: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("rebuild rollups: %w", err)
	}
	if hasCalls {
		log.Info("rollups rebuilt", "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// ping reports whether PostgreSQL answers within timeout.
func (s *store) ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return s.db.PingContext(ctx)
}

// maxBatch bounds how many calls one INSERT writes.
const maxBatch = 2048

// writeTimeout bounds one attempt to write a batch.
const writeTimeout = 5 * time.Second

// pendingCall is a call that is not written yet.
type pendingCall struct {
	pathID int64
	micros int64 // microseconds since the Unix epoch
}

// batch is a group of calls written in one transaction. done is closed after the first
// attempt to write it; ok says whether that attempt committed.
type batch struct {
	calls []pendingCall
	done  chan struct{}
	ok    bool
}

// writer is the one goroutine that writes calls, in groups: requests queue their call and
// wait for the COMMIT of the batch that holds it (group commit). A lone call is written at
// once; under load, calls gather while the previous batch commits, so batches grow by
// themselves. (Two writers were slower: smaller batches, and PostgreSQL's CPU is the limit.)
// While PostgreSQL is down, calls wait in the bounded queue and are written when it is back.
//
// The rollups are not written with the calls: adding a batch to them took more of
// PostgreSQL's time than inserting it. The writer sums the written calls in memory and
// adds them to the rollups in a transaction of their own, rollupEvery after it last did,
// before a read that uses them, and when it stops. A crash can leave the rollups short of
// the last calls; syncRollups finds that at the next start and rebuilds them.
type writer struct {
	db  *sql.DB
	log *slog.Logger
	max int

	mu      sync.Mutex
	batches []*batch // the last one takes new calls while it is not full
	queued  int
	dropped int64

	healthy  atomic.Bool
	wake     chan struct{}
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once

	// insert and addRollups are prepared once, so that PostgreSQL parses and plans them only
	// once per connection.
	insert     *sql.Stmt
	addRollups *sql.Stmt
	offset     int64 // the UTC offset in seconds, for the days of the daily rollup

	// Owned by the writer goroutine: calls written but not yet in the rollups, when the
	// rollups were last written, and when a failed attempt may be retried.
	pending    rollupDelta
	rolled     time.Time
	rollRetry  time.Time
	rollupReqs chan chan error // reads that need the rollups written first

	committed func([]pendingCall) // told of each written batch before it is acknowledged

	// Counters read by /metrics.
	written   atomic.Int64
	batchSize histogram
	latency   histogram
}

// rollupEvery is how long the rollups may lag behind the calls, for reads that do not ask.
const rollupEvery = time.Second

// rollupDelta is what written calls add to the rollups: calls per path and day, and calls
// and first call per path.
type rollupDelta struct {
	days  map[pathDay]int64
	paths map[int64]pathTotal
}

// pathDay is a path id and a day, counted in days since 1970-01-01 at the UTC offset.
type pathDay struct{ pathID, day int64 }

// pathTotal is a number of calls and the first of them, in microseconds since the epoch.
type pathTotal struct{ count, first int64 }

// add sums calls into the delta; offset is the UTC offset in seconds.
func (d *rollupDelta) add(calls []pendingCall, offset int64) {
	if d.days == nil {
		d.days, d.paths = map[pathDay]int64{}, map[int64]pathTotal{}
	}
	for _, c := range calls {
		d.days[pathDay{c.pathID, floorDiv(c.micros+offset*1e6, 86_400e6)}]++
		t, ok := d.paths[c.pathID]
		if !ok || c.micros < t.first {
			t.first = c.micros
		}
		t.count++
		d.paths[c.pathID] = t
	}
}

// empty reports whether the delta adds nothing.
func (d *rollupDelta) empty() bool {
	return len(d.paths) == 0
}

// floorDiv is a / b rounded down.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// insertCalls writes a batch: path ids and times in microseconds since the epoch, as arrays,
// so that a batch is one statement and one round trip.
const insertCalls = `
	INSERT INTO calls (path_id, timestamp)
	SELECT p, 'epoch'::timestamptz + t * interval '1 microsecond'
	FROM unnest($1::int8[], $2::int8[]) AS u (p, t)`

// insertRollups adds a rollupDelta to the rollups: $1 path ids, $2 days since 1970-01-01 and
// $3 counts for daily_calls; $4 path ids, $5 counts and $6 first calls for path_counts.
const insertRollups = `
	WITH days AS (
		INSERT INTO daily_calls (path_id, day, count)
		SELECT p, date '1970-01-01' + d::int4, n FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS u (p, d, n)
		ON CONFLICT (path_id, day) DO UPDATE SET count = daily_calls.count + EXCLUDED.count
	)
	INSERT INTO path_counts (path_id, count, first_call)
	SELECT p, n, 'epoch'::timestamptz + f * interval '1 microsecond' FROM unnest($4::int8[], $5::int8[], $6::int8[]) AS u (p, n, f)
	ON CONFLICT (path_id) DO UPDATE SET
		count = path_counts.count + EXCLUDED.count,
		first_call = least(path_counts.first_call, EXCLUDED.first_call)`

// newWriter prepares its statements and starts the writer goroutine with a queue of at most
// max calls; offset is the UTC offset in seconds. committed is called with the calls of each
// batch after its COMMIT, before they are acknowledged.
func newWriter(ctx context.Context, db *sql.DB, max, offset int, committed func([]pendingCall), log *slog.Logger) (*writer, error) {
	insert, err := db.PrepareContext(ctx, insertCalls)
	if err != nil {
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	addRollups, err := db.PrepareContext(ctx, insertRollups)
	if err != nil {
		insert.Close()
		return nil, fmt.Errorf("prepare rollups: %w", err)
	}
	w := &writer{
		db: db, log: log, max: max, insert: insert, addRollups: addRollups, offset: int64(offset),
		committed:  committed,
		rolled:     time.Now(),
		rollupReqs: make(chan chan error),
		wake:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		stopped:    make(chan struct{}),
		batchSize:  newHistogram(1, 4, 16, 64, 256, 1024, maxBatch),
		latency:    newHistogram(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
	}
	w.healthy.Store(true)
	go w.loop()
	return w, nil
}

// enqueue queues a call and returns its batch, or nil when the queue is full and the call is lost.
func (w *writer) enqueue(pathID int32, at time.Time) *batch {
	w.mu.Lock()
	if w.queued >= w.max {
		w.dropped++
		w.mu.Unlock()
		return nil
	}
	var b *batch
	if n := len(w.batches); n > 0 && len(w.batches[n-1].calls) < maxBatch {
		b = w.batches[n-1]
	} else {
		b = &batch{done: make(chan struct{}), calls: make([]pendingCall, 0, 16)}
		w.batches = append(w.batches, b)
	}
	b.calls = append(b.calls, pendingCall{pathID: int64(pathID), micros: at.UnixMicro()})
	w.queued++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return b
}

// take removes the oldest batch from the queue, so that no call is added to it while it is written.
func (w *writer) take() *batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.batches) == 0 {
		return nil
	}
	b := w.batches[0]
	w.batches[0] = nil
	w.batches = w.batches[1:]
	return b
}

// putBack returns a batch that could not be written to the front of the queue.
func (w *writer) putBack(b *batch) {
	w.mu.Lock()
	w.batches = append([]*batch{b}, w.batches...)
	w.mu.Unlock()
}

// finished removes a written batch from the queue's count.
func (w *writer) finished(b *batch) {
	w.mu.Lock()
	w.queued -= len(b.calls)
	w.mu.Unlock()
}

// queueLen returns how many calls wait to be written.
func (w *writer) queueLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queued
}

// droppedCalls returns how many calls were lost to a full queue.
func (w *writer) droppedCalls() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// loop writes batches until stop is closed and the queue is empty, and keeps the rollups
// up to date.
func (w *writer) loop() {
	defer close(w.stopped)
	wait := 100 * time.Millisecond
	var logged int64
	for {
		select {
		case req := <-w.rollupReqs:
			req <- w.writeRollups()
		default:
		}
		b := w.take()
		if b == nil {
			// No call waits. Written calls go into the rollups when they are due.
			var due <-chan time.Time
			var timer *time.Timer
			if !w.pending.empty() {
				timer = time.NewTimer(time.Until(w.rollupsDue()))
				due = timer.C
			}
			select {
			case <-w.wake:
			case <-due:
				w.maybeWriteRollups()
			case req := <-w.rollupReqs:
				req <- w.writeRollups()
			case <-w.stop:
				if w.queueLen() == 0 {
					if err := w.writeRollups(); err != nil {
						w.log.Error("rollups not written at stop: they are rebuilt at the next start", "err", err)
					}
					return
				}
			}
			if timer != nil {
				timer.Stop()
			}
			continue
		}
		start := time.Now()
		err := w.write(b)
		first := !isClosed(b.done)
		if err == nil {
			w.latency.observe(time.Since(start).Seconds())
			w.batchSize.observe(float64(len(b.calls)))
			w.written.Add(int64(len(b.calls)))
			w.pending.add(b.calls, w.offset)
			w.committed(b.calls)
			w.finished(b)
			if !w.healthy.Swap(true) {
				w.log.Info("PostgreSQL is back: writing queued calls", "queued", w.queueLen())
			}
			wait = 100 * time.Millisecond
		} else {
			if w.healthy.Swap(false) {
				w.log.Error("cannot write calls: keeping them in memory until PostgreSQL is back", "err", err)
			}
			w.putBack(b)
		}
		if first {
			b.ok = err == nil
			close(b.done)
		}
		if d := w.droppedCalls(); d > logged {
			w.log.Error("queue full: calls lost", "lost", d-logged, "lost_total", d, "queue_size", w.max)
			logged = d
		}
		if err != nil {
			w.pause(wait)
			wait = min(2*wait, 5*time.Second)
			continue
		}
		w.maybeWriteRollups()
	}
}

// pause waits for d after a failed write, still answering reads that need the rollups.
func (w *writer) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case req := <-w.rollupReqs:
			req <- w.writeRollups()
		}
	}
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// write inserts the calls of one batch, in one statement.
func (w *writer) write(b *batch) error {
	ids := make([]int64, len(b.calls))
	micros := make([]int64, len(b.calls))
	for i, c := range b.calls {
		ids[i], micros[i] = c.pathID, c.micros
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	_, err := w.insert.ExecContext(ctx, pq.Array(ids), pq.Array(micros))
	if err != nil {
		return fmt.Errorf("insert %d calls: %w", len(b.calls), err)
	}
	return nil
}

// rollupsDue returns when the written calls are to go into the rollups: rollupEvery after
// they last did, and not before a failed attempt may be retried.
func (w *writer) rollupsDue() time.Time {
	due := w.rolled.Add(rollupEvery)
	if due.Before(w.rollRetry) {
		return w.rollRetry
	}
	return due
}

// maybeWriteRollups adds the written calls to the rollups when they are due.
func (w *writer) maybeWriteRollups() {
	if w.pending.empty() || time.Now().Before(w.rollupsDue()) {
		return
	}
	if err := w.writeRollups(); err != nil {
		w.rollRetry = time.Now().Add(5 * time.Second)
		w.log.Error("cannot add calls to the rollups: trying again later", "err", err)
	}
}

// writeRollups adds the written calls that are not yet in the rollups to them, in one statement.
func (w *writer) writeRollups() error {
	if w.pending.empty() {
		return nil
	}
	var dp, dd, dn, pp, pn, pf []int64
	for k, n := range w.pending.days {
		dp, dd, dn = append(dp, k.pathID), append(dd, k.day), append(dn, n)
	}
	for id, t := range w.pending.paths {
		pp, pn, pf = append(pp, id), append(pn, t.count), append(pf, t.first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	_, err := w.addRollups.ExecContext(ctx, pq.Array(dp), pq.Array(dd), pq.Array(dn), pq.Array(pp), pq.Array(pn), pq.Array(pf))
	if err != nil {
		return fmt.Errorf("add %d paths to the rollups: %w", len(pp), err)
	}
	w.pending = rollupDelta{}
	w.rolled, w.rollRetry = time.Now(), time.Time{}
	return nil
}

// flushRollups has the writer add every call written so far to the rollups, so that a read
// of them that follows counts every acknowledged call.
func (w *writer) flushRollups(ctx context.Context) error {
	req := make(chan error, 1)
	select {
	case w.rollupReqs <- req:
	case <-w.stopped:
		return nil // the writer wrote the rollups when it stopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close writes every queued call, until ctx ends, and stops the writer.
func (w *writer) close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.stopped:
		return errors.Join(w.insert.Close(), w.addRollups.Close())
	case <-ctx.Done():
		return fmt.Errorf("%d calls not written before the shutdown deadline", w.queueLen())
	}
}
