package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/lib/pq"
)

// The rollups (path_counts and daily_calls) are not written with the calls: adding every
// batch to them cost PostgreSQL more than inserting it. Instead each batch of calls is
// written together with a journal row (oxitraffic_writes) that holds what the batch adds to
// the rollups. The writer sums written batches in memory and, in one statement, adds the
// sum to the rollups and deletes the journal rows of those batches. What a crash leaves
// behind is exactly the journal rows not yet deleted: the next start adds them, at a cost
// proportional to the calls of the last second, not to the history.

// rollupVersion names the way the rollups are kept; another value in oxitraffic_meta
// (or none: a database of the original OxiTraffic) makes the start rebuild them.
const rollupVersion = "journal-1"

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

// deltaArrays is a rollupDelta as the six arrays of the rollup statements: path ids, days
// and counts for daily_calls; path ids, counts and first calls for path_counts.
type deltaArrays struct {
	dp, dd, dn, pp, pn, pf []int64
}

// addCalls sums calls into the delta; offset is the UTC offset in seconds.
func (d *rollupDelta) addCalls(calls []pendingCall, offset int64) {
	d.init()
	for _, c := range calls {
		d.days[pathDay{c.pathID, floorDiv(c.micros+offset*1e6, 86_400e6)}]++
		d.addPath(c.pathID, 1, c.micros)
	}
}

// addArrays sums a delta given as arrays into d.
func (d *rollupDelta) addArrays(a deltaArrays) {
	d.init()
	for i := range a.dp {
		d.days[pathDay{a.dp[i], a.dd[i]}] += a.dn[i]
	}
	for i := range a.pp {
		d.addPath(a.pp[i], a.pn[i], a.pf[i])
	}
}

// init makes the maps of an empty delta.
func (d *rollupDelta) init() {
	if d.days == nil {
		d.days, d.paths = map[pathDay]int64{}, map[int64]pathTotal{}
	}
}

// addPath adds n calls of a path, the first at first.
func (d *rollupDelta) addPath(id, n, first int64) {
	t, ok := d.paths[id]
	if !ok || first < t.first {
		t.first = first
	}
	t.count += n
	d.paths[id] = t
}

// empty reports whether the delta adds nothing.
func (d *rollupDelta) empty() bool {
	return len(d.paths) == 0
}

// arrays returns the delta as the arrays of the rollup statements.
func (d *rollupDelta) arrays() deltaArrays {
	a := deltaArrays{
		dp: make([]int64, 0, len(d.days)), dd: make([]int64, 0, len(d.days)), dn: make([]int64, 0, len(d.days)),
		pp: make([]int64, 0, len(d.paths)), pn: make([]int64, 0, len(d.paths)), pf: make([]int64, 0, len(d.paths)),
	}
	for k, n := range d.days {
		a.dp, a.dd, a.dn = append(a.dp, k.pathID), append(a.dd, k.day), append(a.dn, n)
	}
	for id, t := range d.paths {
		a.pp, a.pn, a.pf = append(a.pp, id), append(a.pn, t.count), append(a.pf, t.first)
	}
	return a
}

// args returns the arrays as statement arguments, in the order $1 to $6.
func (a deltaArrays) args() []any {
	return []any{pq.Array(a.dp), pq.Array(a.dd), pq.Array(a.dn), pq.Array(a.pp), pq.Array(a.pn), pq.Array(a.pf)}
}

// floorDiv is a / b rounded down.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// addToRollups is the part of a rollup statement that adds the arrays $1 to $6 (see
// deltaArrays) to the rollups, when the CTE named by its caller's condition allows.
const addToRollups = `
	days AS (
		INSERT INTO daily_calls (path_id, day, count)
		SELECT p, date '1970-01-01' + d::int4, n FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS u (p, d, n)
		WHERE %[1]s
		ON CONFLICT (path_id, day) DO UPDATE SET count = daily_calls.count + EXCLUDED.count
	)
	INSERT INTO path_counts (path_id, count, first_call)
	SELECT p, n, 'epoch'::timestamptz + f * interval '1 microsecond' FROM unnest($4::int8[], $5::int8[], $6::int8[]) AS u (p, n, f)
	WHERE %[1]s
	ON CONFLICT (path_id) DO UPDATE SET
		count = path_counts.count + EXCLUDED.count,
		first_call = least(path_counts.first_call, EXCLUDED.first_call)`

// flushRollupsSQL adds a delta to the rollups and deletes the journal rows of the batches
// it sums ($7 the daemon, $8 their sequence numbers), in one statement. Only when it
// deleted them does it add anything: a retry of a flush whose COMMIT was lost on the way
// back (or that runs while that flush still commits) finds them gone and adds nothing.
var flushRollupsSQL = `
	WITH gone AS (
		DELETE FROM oxitraffic_writes WHERE daemon = $7 AND seq = ANY($8::int8[]) RETURNING 1
	),` + fmt.Sprintf(addToRollups, "EXISTS (SELECT 1 FROM gone)")

// replayRollupsSQL adds a delta to the rollups unconditionally, for the start check.
var replayRollupsSQL = "WITH" + fmt.Sprintf(addToRollups, "true")

// pendingFlush is a sum of written batches on its way into the rollups: the delta and the
// sequence numbers of the batches' journal rows. Until it is confirmed it is sent again
// exactly as it was, so that a lost answer never adds it twice.
type pendingFlush struct {
	delta rollupDelta
	seqs  []int64
}

// rollups is the writer's state of the rollups: batches written since the last flush, a
// flush that was sent but not confirmed, and when to flush next. Only the writer goroutine
// uses it.
type rollups struct {
	stmt    *sql.Stmt
	log     *slog.Logger
	daemon  int64
	offset  int64 // the UTC offset in seconds, for the days of daily_calls
	pending pendingFlush
	sent    pendingFlush // non-empty while a flush awaits confirmation
	rolled  time.Time    // when the rollups were last written
	retry   time.Time    // when a failed flush may be tried again
}

// rollupEvery is how long the rollups may lag behind the calls, for reads that do not ask.
const rollupEvery = time.Second

// written records a batch that was committed, with its journal row's sequence number.
func (r *rollups) written(calls []pendingCall, seq int64) {
	r.pending.delta.addCalls(calls, r.offset)
	r.pending.seqs = append(r.pending.seqs, seq)
}

// idle reports whether every written batch is in the rollups.
func (r *rollups) idle() bool {
	return r.pending.delta.empty() && r.sent.delta.empty()
}

// due returns when the written calls are to go into the rollups: rollupEvery after they
// last did, and not before a failed attempt may be retried.
func (r *rollups) due() time.Time {
	due := r.rolled.Add(rollupEvery)
	if due.Before(r.retry) {
		return r.retry
	}
	return due
}

// flush adds every written batch to the rollups: first a flush that was sent but not
// confirmed, exactly as it was, then the batches written since.
func (r *rollups) flush(ctx context.Context) error {
	if r.sent.delta.empty() {
		if r.pending.delta.empty() {
			return nil
		}
		r.sent, r.pending = r.pending, pendingFlush{}
	}
	args := append(r.sent.delta.arrays().args(), r.daemon, pq.Array(r.sent.seqs))
	res, err := r.stmt.ExecContext(ctx, args...)
	if err != nil {
		r.retry = time.Now().Add(5 * time.Second)
		return fmt.Errorf("add %d paths to the rollups: %w", len(r.sent.delta.paths), err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		r.log.Info("a rollup flush whose answer was lost had committed: not added again", "paths", len(r.sent.delta.paths))
	}
	r.sent = pendingFlush{}
	r.rolled, r.retry = time.Now(), time.Time{}
	if !r.pending.delta.empty() {
		return r.flush(ctx)
	}
	return nil
}

// startProgress is told, during a long start check, that the start is still progressing.
type startProgress func()

// syncRollups makes the rollups agree with calls at start. Never made (a database of the
// original OxiTraffic), made another way, or made for another UTC offset, they are rebuilt
// from calls, while progress is called every few seconds; otherwise the journal rows left
// by a daemon that stopped without flushing (a crash) are added to them.
func syncRollups(ctx context.Context, db *sql.DB, loc *time.Location, progress startProgress, log *slog.Logger) error {
	offset := zoneSeconds(loc)
	ctx, cancel := context.WithTimeout(ctx, 6*time.Hour)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("check rollups: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockID); err != nil {
		return fmt.Errorf("check rollups: lock: %w", err)
	}
	var storedOffset, storedVersion sql.NullString
	err = tx.QueryRowContext(ctx, `
		SELECT (SELECT value FROM oxitraffic_meta WHERE key = 'rollup_offset'),
		       (SELECT value FROM oxitraffic_meta WHERE key = 'rollup_version')`).Scan(&storedOffset, &storedVersion)
	if err != nil {
		return fmt.Errorf("check rollups: %w", err)
	}
	if storedOffset.String == strconv.Itoa(offset) && storedVersion.String == rollupVersion {
		if err := replayJournal(ctx, tx, log); err != nil {
			return err
		}
	} else if err := rebuildRollups(ctx, tx, offset, progress, log); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("check rollups: %w", err)
	}
	return nil
}

// replayJournal adds the journal rows that no flush deleted to the rollups, and deletes them.
func replayJournal(ctx context.Context, tx *sql.Tx, log *slog.Logger) error {
	rows, err := tx.QueryContext(ctx, "DELETE FROM oxitraffic_writes RETURNING dp, dd, dn, pp, pn, pf")
	if err != nil {
		return fmt.Errorf("read rollup journal: %w", err)
	}
	defer rows.Close()
	var sum rollupDelta
	batches := 0
	for rows.Next() {
		var a deltaArrays
		if err := rows.Scan((*pq.Int64Array)(&a.dp), (*pq.Int64Array)(&a.dd), (*pq.Int64Array)(&a.dn),
			(*pq.Int64Array)(&a.pp), (*pq.Int64Array)(&a.pn), (*pq.Int64Array)(&a.pf)); err != nil {
			return fmt.Errorf("read rollup journal: %w", err)
		}
		sum.addArrays(a)
		batches++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read rollup journal: %w", err)
	}
	if sum.empty() {
		return nil
	}
	if _, err := tx.ExecContext(ctx, replayRollupsSQL, sum.arrays().args()...); err != nil {
		return fmt.Errorf("replay rollup journal: %w", err)
	}
	log.Info("added the batches that the last run wrote but did not add to the rollups", "batches", batches, "paths", len(sum.paths))
	return nil
}

// rebuildRollups counts the rollups again from calls, calling progress every few seconds
// while PostgreSQL works.
func rebuildRollups(ctx context.Context, tx *sql.Tx, offset int, progress startProgress, log *slog.Logger) error {
	var hasCalls bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM calls)").Scan(&hasCalls); err != nil {
		return fmt.Errorf("rebuild rollups: %w", err)
	}
	if hasCalls {
		log.Info("rebuilding the rollups from calls", "utc_offset_seconds", offset)
		progress()
		done := make(chan struct{})
		defer close(done)
		go func() {
			t := time.NewTicker(progressEvery)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					progress()
				}
			}
		}()
	}
	start := time.Now()
	day := `((timestamp::timestamptz + $1::interval) AT TIME ZONE 'UTC')::date`
	for _, st := range []struct {
		query string
		args  []any
	}{
		{"TRUNCATE daily_calls, path_counts, oxitraffic_writes", nil},
		{"INSERT INTO daily_calls (path_id, day, count) SELECT path_id, " + day + ", count(*) FROM calls GROUP BY 1, 2",
			[]any{offsetInterval(offset)}},
		{"INSERT INTO path_counts (path_id, count, first_call) SELECT path_id, count(*), min(timestamp) FROM calls GROUP BY 1", nil},
		{`INSERT INTO oxitraffic_meta (key, value) VALUES ('rollup_offset', $1), ('rollup_version', $2)
		  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, []any{strconv.Itoa(offset), rollupVersion}},
	} {
		if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
			return fmt.Errorf("rebuild rollups: %w", err)
		}
	}
	if hasCalls {
		log.Info("rollups rebuilt", "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// progressEvery is how often a long start tells systemd that it is still starting.
const progressEvery = 10 * time.Second

// zoneSeconds returns the offset of a fixed time zone in seconds east of UTC.
func zoneSeconds(loc *time.Location) int {
	_, secs := time.Unix(0, 0).In(loc).Zone()
	return secs
}

// offsetInterval renders an offset in seconds as a PostgreSQL interval.
func offsetInterval(secs int) string {
	return fmt.Sprintf("%d seconds", secs)
}
