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
// the rollups. About once a second the writer deletes the journal rows of its batches and
// adds what those rows hold to the rollups, in one statement: what is added is what that
// statement deleted, so a flush sent again after a lost answer adds nothing twice. What a
// crash leaves behind is exactly the rows not yet added: the next start, or any running
// daemon ten seconds later, adds them, at a cost proportional to the calls of the last
// second, not to the history. Rows of another daemon are marked as rolled, not deleted,
// so that a batch that daemon sends again after a lost answer still finds its row.

// rollupVersion names the way the rollups are kept; another value in oxitraffic_meta
// (or none: a database of the original OxiTraffic) makes the start rebuild them.
const rollupVersion = "journal-2"

// rollupDelta is what written calls add to the rollups: calls per path and day, calls and
// first call per path, and calls of the whole site per hour.
type rollupDelta struct {
	days  map[pathDay]int64
	paths map[int64]pathTotal
	hours map[int64]int64 // hours since 1970-01-01 at the UTC offset
}

// pathDay is a path id and a day, counted in days since 1970-01-01 at the UTC offset.
type pathDay struct{ pathID, day int64 }

// pathTotal is a number of calls and the first of them, in microseconds since the epoch.
type pathTotal struct{ count, first int64 }

// deltaArrays is a rollupDelta as the eight arrays of a journal row: path ids, days and
// counts for daily_calls; path ids, counts and first calls for path_counts; hours and
// counts for site_hourly.
type deltaArrays struct {
	dp, dd, dn, pp, pn, pf, sh, sn []int64
}

// addCalls sums calls into the delta; offset is the UTC offset in seconds.
func (d *rollupDelta) addCalls(calls []pendingCall, offset int64) {
	d.init()
	for _, c := range calls {
		d.days[pathDay{c.pathID, floorDiv(c.micros+offset*1e6, 86_400e6)}]++
		d.hours[floorDiv(c.micros+offset*1e6, 3_600e6)]++
		d.addPath(c.pathID, 1, c.micros)
	}
}

// init makes the maps of an empty delta.
func (d *rollupDelta) init() {
	if d.days == nil {
		d.days, d.paths, d.hours = map[pathDay]int64{}, map[int64]pathTotal{}, map[int64]int64{}
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

// arrays returns the delta as the arrays of the rollup statements.
func (d *rollupDelta) arrays() deltaArrays {
	a := deltaArrays{
		dp: make([]int64, 0, len(d.days)), dd: make([]int64, 0, len(d.days)), dn: make([]int64, 0, len(d.days)),
		pp: make([]int64, 0, len(d.paths)), pn: make([]int64, 0, len(d.paths)), pf: make([]int64, 0, len(d.paths)),
		sh: make([]int64, 0, len(d.hours)), sn: make([]int64, 0, len(d.hours)),
	}
	for h, n := range d.hours {
		a.sh, a.sn = append(a.sh, h), append(a.sn, n)
	}
	for k, n := range d.days {
		a.dp, a.dd, a.dn = append(a.dp, k.pathID), append(a.dd, k.day), append(a.dn, n)
	}
	for id, t := range d.paths {
		a.pp, a.pn, a.pf = append(a.pp, id), append(a.pn, t.count), append(a.pf, t.first)
	}
	return a
}

// floorDiv is a / b rounded down.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// rollJournalSQL adds journal rows to the rollups, in one statement, and returns the new
// rollup generation (see rollupGeneration), how many paths it added calls to, and how many
// rows of other daemons it added: it deletes this
// daemon's ($1) rows with the sequence numbers $2, whose batches are settled, and marks as
// rolled the rows of other daemons that are still not rolled $3 after they were written (a
// crashed daemon's, or one that has lost the answer to a batch and not sent it again yet:
// the marked row stays, so that its retry still finds it). It adds what it deleted or
// marked, except rows that another daemon marked before, and deletes rows marked a week
// ago (journalKeep). The start check runs it with $1 = 0 and $3 = 0: every row not rolled.
const rollJournalSQL = `
	WITH mine AS (
		DELETE FROM oxitraffic_writes WHERE daemon = $1 AND seq = ANY($2::int8[])
		RETURNING dp, dd, dn, pp, pn, pf, sh, sn, rolled
	), orphans AS (
		UPDATE oxitraffic_writes SET rolled = true
		WHERE NOT rolled AND daemon <> $1 AND at <= now() - $3::interval
		RETURNING dp, dd, dn, pp, pn, pf, sh, sn
	), stale AS (
		DELETE FROM oxitraffic_writes WHERE rolled AND daemon <> $1 AND at < now() - interval '7 days'
	), r AS (
		SELECT dp, dd, dn, pp, pn, pf, sh, sn FROM mine WHERE NOT rolled
		UNION ALL SELECT dp, dd, dn, pp, pn, pf, sh, sn FROM orphans
	), hours AS (
		INSERT INTO site_hourly (hour, count)
		SELECT timestamp '1970-01-01' + h * interval '1 hour', sum(n) FROM r, unnest(r.sh, r.sn) AS u (h, n) GROUP BY 1
		ON CONFLICT (hour) DO UPDATE SET count = site_hourly.count + EXCLUDED.count
	), days AS (
		INSERT INTO daily_calls (path_id, day, count)
		SELECT p, date '1970-01-01' + d::int4, sum(n) FROM r, unnest(r.dp, r.dd, r.dn) AS u (p, d, n) GROUP BY 1, 2
		ON CONFLICT (path_id, day) DO UPDATE SET count = daily_calls.count + EXCLUDED.count
	), totals AS (
		INSERT INTO path_counts (path_id, count, first_call)
		SELECT p, sum(n), 'epoch'::timestamptz + min(f) * interval '1 microsecond' FROM r, unnest(r.pp, r.pn, r.pf) AS u (p, n, f) GROUP BY 1
		ON CONFLICT (path_id) DO UPDATE SET
			count = path_counts.count + EXCLUDED.count,
			first_call = least(path_counts.first_call, EXCLUDED.first_call)
		RETURNING 1
	), gen AS (
		UPDATE oxitraffic_meta SET value = (value::int8 + 1)::text WHERE key = 'rollup_generation'
		RETURNING value::int8 AS g
	)
	SELECT coalesce((SELECT g FROM gen), 0), (SELECT count(*) FROM totals), (SELECT count(*) FROM orphans)`

// rollupGeneration is a number in oxitraffic_meta that every flush of any daemon raises by
// one: a daemon whose flush raises it by more, or that finds it changed, learns that
// another daemon added calls to the rollups.
const rollupGeneration = "rollup_generation"

// journalKeep is how long the marked journal rows of other daemons are kept: a daemon that
// lost the answer to a batch finds its row when it sends the batch again within that time.
const journalKeep = 7 * 24 * time.Hour

// orphanAge is how long a journal row may wait for its own writer before any daemon rolls it.
const orphanAge = "10 seconds"

// rollups is the writer's state of the rollups: the sequence numbers of the batches written
// since the last flush, and when to flush next. Only the writer goroutine uses it.
type rollups struct {
	stmt    *sql.Stmt
	log     *slog.Logger
	daemon  int64
	offset  int64   // the UTC offset in seconds, for the days of daily_calls
	pending []int64 // sequence numbers of written batches not yet rolled
	rolled  time.Time
	tried   time.Time // when a flush was last tried
	retry   time.Time // when a failed flush may be tried again
	failed  error     // the error of the last flush, nil when it succeeded
}

// rollupEvery is how long the rollups may lag behind the calls, for reads that do not ask.
const rollupEvery = time.Second

// written records a batch that was committed, with its journal row's sequence number.
func (r *rollups) written(seq int64) {
	r.pending = append(r.pending, seq)
}

// idle reports whether every written batch is in the rollups.
func (r *rollups) idle() bool {
	return len(r.pending) == 0
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

// flush adds the journal rows of every written batch to the rollups, and those of other
// daemons that waited orphanAge. A flush that fails keeps its batches for the next one.
// It returns the rollup generation after it, and how many rows of other daemons it added.
func (r *rollups) flush(ctx context.Context) (gen, orphans int64, err error) {
	var paths int64
	r.tried = time.Now()
	err = r.stmt.QueryRowContext(ctx, r.daemon, pq.Array(r.pending), orphanAge).Scan(&gen, &paths, &orphans)
	if err != nil {
		r.retry = time.Now().Add(5 * time.Second)
		r.failed = fmt.Errorf("add %d batches to the rollups: %w", len(r.pending), err)
		return 0, 0, r.failed
	}
	r.failed = nil
	if paths == 0 && len(r.pending) > 0 {
		r.log.Info("a rollup flush whose answer was lost had committed: not added again", "batches", len(r.pending))
	}
	r.pending = r.pending[:0]
	r.rolled, r.retry = time.Now(), time.Time{}
	return gen, orphans, nil
}

// waitRetry reports whether a failed flush is not to be tried again yet.
func (r *rollups) waitRetry() bool {
	return time.Now().Before(r.retry)
}

// readCounts returns every path with its id and its number of calls in the rollups.
func readCounts(ctx context.Context, db *sql.DB) (map[string]int32, map[int32]int64, error) {
	rows, err := db.QueryContext(ctx, "SELECT p.id, p.path, coalesce(c.count, 0) FROM paths p LEFT JOIN path_counts c ON c.path_id = p.id")
	if err != nil {
		return nil, nil, fmt.Errorf("read counts: %w", err)
	}
	defer rows.Close()
	paths, totals := map[string]int32{}, map[int32]int64{}
	for rows.Next() {
		var id int32
		var p string
		var n int64
		if err := rows.Scan(&id, &p, &n); err != nil {
			return nil, nil, fmt.Errorf("read counts: %w", err)
		}
		paths[p], totals[id] = id, n
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read counts: %w", err)
	}
	return paths, totals, nil
}

// readGeneration returns the rollup generation, 0 when there is none yet.
func readGeneration(ctx context.Context, db *sql.DB) (int64, error) {
	var gen int64
	err := db.QueryRowContext(ctx, "SELECT coalesce((SELECT value::int8 FROM oxitraffic_meta WHERE key = $1), 0)", rollupGeneration).Scan(&gen)
	if err != nil {
		return 0, fmt.Errorf("read rollup generation: %w", err)
	}
	return gen, nil
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
	// Daemons running on this database learn from the generation that the rollups changed.
	if _, err := tx.ExecContext(ctx, `INSERT INTO oxitraffic_meta (key, value) VALUES ($1, '1')
		ON CONFLICT (key) DO UPDATE SET value = (oxitraffic_meta.value::int8 + 1)::text`, rollupGeneration); err != nil {
		return fmt.Errorf("check rollups: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("check rollups: %w", err)
	}
	return nil
}

// replayJournal rolls every journal row that no daemon rolled yet into the rollups, and
// deletes rolled rows older than journalKeep.
func replayJournal(ctx context.Context, tx *sql.Tx, log *slog.Logger) error {
	var left int64
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM oxitraffic_writes WHERE NOT rolled").Scan(&left); err != nil {
		return fmt.Errorf("read rollup journal: %w", err)
	}
	if left > 0 {
		if _, err := tx.ExecContext(ctx, rollJournalSQL, 0, pq.Array([]int64{}), "0 seconds"); err != nil {
			return fmt.Errorf("replay rollup journal: %w", err)
		}
		log.Info("added the batches that the last run wrote but did not add to the rollups", "batches", left)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM oxitraffic_writes WHERE rolled AND at < now() - $1::interval", fmt.Sprintf("%d seconds", int(journalKeep.Seconds()))); err != nil {
		return fmt.Errorf("clean rollup journal: %w", err)
	}
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
		defer whileRunning(progress)()
	}
	start := time.Now()
	day := `((timestamp::timestamptz + $1::interval) AT TIME ZONE 'UTC')::date`
	for _, st := range []struct {
		query string
		args  []any
	}{
		// Running daemons wait to write until the rebuild commits: a batch is either in
		// calls before the rebuild counts them, its journal row marked so that nobody
		// adds it again, or after, with its row to add. The rows are kept (marked), so
		// that a batch sent again after a lost answer still finds its row.
		{"LOCK TABLE oxitraffic_writes IN EXCLUSIVE MODE", nil},
		{"UPDATE oxitraffic_writes SET rolled = true WHERE NOT rolled", nil},
		{"TRUNCATE daily_calls, path_counts, site_hourly", nil},
		{"INSERT INTO site_hourly (hour, count) SELECT date_trunc('hour', (timestamp::timestamptz + $1::interval) AT TIME ZONE 'UTC'), count(*) FROM calls GROUP BY 1",
			[]any{offsetInterval(offset)}},
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

// whileRunning calls progress every progressEvery until the function it returns is called.
func whileRunning(progress startProgress) (stop func()) {
	done := make(chan struct{})
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
	return func() { close(done) }
}

// zoneSeconds returns the offset of a fixed time zone in seconds east of UTC.
func zoneSeconds(loc *time.Location) int {
	_, secs := time.Unix(0, 0).In(loc).Zone()
	return secs
}

// offsetInterval renders an offset in seconds as a PostgreSQL interval.
func offsetInterval(secs int) string {
	return fmt.Sprintf("%d seconds", secs)
}
