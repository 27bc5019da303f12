package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
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
const rollupVersion = "journal-3"

// rollupDelta is what written calls add to the rollups: calls per path and local day,
// calls and first call per path, and calls of the whole site per local hour.
type rollupDelta struct {
	days  map[pathDay]int64
	paths map[int64]pathTotal
	hours map[int64]hourCount // by the start of the hour, in seconds since the epoch
}

// pathDay is a path id and a local day, counted in days since 1970-01-01.
type pathDay struct{ pathID, day int64 }

// pathTotal is a number of calls and the first of them, in microseconds since the epoch.
type pathTotal struct{ count, first int64 }

// hourCount is the calls of a local hour, and the UTC offset in seconds at its start.
type hourCount struct{ count, offset int64 }

// deltaArrays is a rollupDelta as the nine arrays of a journal row: path ids, days and
// counts for daily_calls; path ids, counts and first calls for path_counts; hours (since
// 1970-01-01 on the local clock), counts and UTC offsets for site_hourly.
type deltaArrays struct {
	dp, dd, dn, pp, pn, pf, sh, sn, so []int64
}

// addCalls sums calls into the delta, with their days and hours at loc.
func (d *rollupDelta) addCalls(calls []pendingCall, loc *time.Location) {
	d.init()
	// Calls of a batch are mostly of one hour: its day and start are looked up once.
	var from, to, day, start, offset int64
	for _, c := range calls {
		if c.micros < from || c.micros >= to || to == 0 {
			t := time.UnixMicro(c.micros)
			s := hourStart(t, loc)
			_, off := s.Zone()
			end := nextHour(s, loc)
			if dayEnd := addDays(t, 1, loc); dayEnd.Before(end) {
				end = dayEnd
			}
			from, to, day = max(s.UnixMicro(), dayStart(t, loc).UnixMicro()), end.UnixMicro(), civilDay(t, loc)
			start, offset = s.Unix(), int64(off)
		}
		d.days[pathDay{c.pathID, day}]++
		d.hours[start] = hourCount{d.hours[start].count + 1, offset}
		d.addPath(c.pathID, 1, c.micros)
	}
}

// init makes the maps of an empty delta.
func (d *rollupDelta) init() {
	if d.days == nil {
		d.days, d.paths, d.hours = map[pathDay]int64{}, map[int64]pathTotal{}, map[int64]hourCount{}
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
		sh: make([]int64, 0, len(d.hours)), sn: make([]int64, 0, len(d.hours)), so: make([]int64, 0, len(d.hours)),
	}
	for start, h := range d.hours {
		a.sh, a.sn, a.so = append(a.sh, (start+h.offset)/3600), append(a.sn, h.count), append(a.so, h.offset)
	}
	for k, n := range d.days {
		a.dp, a.dd, a.dn = append(a.dp, k.pathID), append(a.dd, k.day), append(a.dn, n)
	}
	for id, t := range d.paths {
		a.pp, a.pn, a.pf = append(a.pp, id), append(a.pn, t.count), append(a.pf, t.first)
	}
	return a
}

// rollJournalSQL adds journal rows to the rollups, in one statement, and returns the
// rollup generation (see rollupGeneration), by how much it raised it, how many paths it added
// calls to, and how many rows of other daemons it added: it deletes this daemon's ($1) rows
// with the sequence numbers $2, whose batches are settled, and marks as rolled the rows of
// other daemons that are still not rolled $3 after they were written (a crashed daemon's,
// or one that has lost the answer to a batch and not sent it again yet: the marked row
// stays, so that its retry still finds it). It adds what it deleted or marked, except rows
// that another daemon marked before, and deletes rows marked a week ago (journalKeep). The
// generation rises only when it added something. The start check runs it with $1 = 0 and
// $3 = 0: every row not rolled. An hour of site_hourly is the instant at which it starts,
// as UTC: its hour on the local clock less its offset (rows without offsets are at UTC).
const rollJournalSQL = `
	WITH mine AS (
		DELETE FROM oxitraffic_writes WHERE daemon = $1 AND seq = ANY($2::int8[])
		RETURNING dp, dd, dn, pp, pn, pf, sh, sn, so, rolled
	), orphans AS (
		UPDATE oxitraffic_writes SET rolled = true
		WHERE NOT rolled AND daemon <> $1 AND at <= now() - $3::interval
		RETURNING dp, dd, dn, pp, pn, pf, sh, sn, so
	), stale AS (
		DELETE FROM oxitraffic_writes WHERE rolled AND daemon <> $1 AND at < now() - interval '7 days'
	), r AS (
		SELECT dp, dd, dn, pp, pn, pf, sh, sn, so FROM mine WHERE NOT rolled
		UNION ALL SELECT dp, dd, dn, pp, pn, pf, sh, sn, so FROM orphans
	), hours AS (
		INSERT INTO site_hourly (hour, count)
		SELECT timestamp '1970-01-01' + (h * 3600 - coalesce(o, 0)) * interval '1 second', sum(n)
		FROM r, unnest(r.sh, r.sn, r.so) AS u (h, n, o) WHERE h IS NOT NULL GROUP BY 1
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
		UPDATE oxitraffic_meta SET value = (value::int8 + 1)::text
		WHERE key = 'rollup_generation' AND EXISTS (SELECT 1 FROM r)
		RETURNING value::int8 AS g
	)
	SELECT coalesce((SELECT g FROM gen), (SELECT value::int8 FROM oxitraffic_meta WHERE key = 'rollup_generation'), 0),
		(SELECT count(*) FROM gen), (SELECT count(*) FROM totals), (SELECT count(*) FROM orphans)`

// rollupGeneration is a number in oxitraffic_meta that every flush of any daemon that adds
// something to the rollups raises by one: a daemon whose flush raises it by more, or that
// finds it changed, learns that another daemon added calls to the rollups. Flushes that add
// nothing leave it, so that idle daemons on one database do not wake each other.
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
	loc     *time.Location // the owner's zone, for the days and hours of the rollups
	pending []int64        // sequence numbers of written batches not yet rolled
	rolled  time.Time
	tried   time.Time // when a flush was last tried
	retry   time.Time // when a failed flush may be tried again
	failed  error     // the error of the last flush, nil when it succeeded
	raised  int64     // by how much the last flush raised the generation: 1 when it added something, else 0
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
// It returns the rollup generation after it, and how many rows of other daemons it added;
// raised says whether it raised the generation.
func (r *rollups) flush(ctx context.Context) (gen, orphans int64, err error) {
	var paths int64
	r.tried = time.Now()
	err = r.stmt.QueryRowContext(ctx, r.daemon, pq.Array(r.pending), orphanAge).Scan(&gen, &r.raised, &paths, &orphans)
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
// original OxiTraffic), made another way, or made for another zone (time_zone or
// utc_offset), they are rebuilt from calls, while progress is called every few seconds;
// otherwise the journal rows left by a daemon that stopped without flushing (a crash) are
// added to them. A rebuild for another zone while daemons run on the database (they hold
// zoneLockID, see holdZone) is refused: their journal rows hold days of their zone.
func syncRollups(ctx context.Context, db *sql.DB, loc *time.Location, progress startProgress, log *slog.Logger) error {
	zone := zoneName(loc)
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
	var storedZone, storedVersion sql.NullString
	err = tx.QueryRowContext(ctx, `
		SELECT (SELECT value FROM oxitraffic_meta WHERE key = 'rollup_zone'),
		       (SELECT value FROM oxitraffic_meta WHERE key = 'rollup_version')`).Scan(&storedZone, &storedVersion)
	if err != nil {
		return fmt.Errorf("check rollups: %w", err)
	}
	switch {
	case storedZone.String == zone && storedVersion.String == rollupVersion:
		if err := replayJournal(ctx, tx, log); err != nil {
			return err
		}
	default:
		if storedZone.Valid && storedZone.String != zone {
			var free bool
			if err := tx.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock($1)", zoneLockID).Scan(&free); err != nil {
				return fmt.Errorf("check rollups: lock: %w", err)
			}
			if !free {
				return errZoneInUse(zone, storedZone.String)
			}
		}
		if err := rebuildRollups(ctx, tx, loc, progress, log); err != nil {
			return err
		}
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

// zoneLockID is the advisory lock that every running daemon holds shared for as long as it
// runs, so that a start that would rebuild the rollups for another zone sees that they are
// in use.
const zoneLockID = 7_215_032_712

// errZoneInUse is the refusal of a start whose zone is not the one that the daemons
// running on the database keep the rollups at.
func errZoneInUse(zone, inUse string) error {
	return fmt.Errorf("config keys time_zone, utc_offset: this daemon counts days at %s, but the daemons running on this database count them at %s; "+
		"set the same zone as theirs, or stop them all before changing it (the next start rebuilds the rollups)", zone, inUse)
}

// holdZone takes zoneLockID, shared, on a connection of db that it keeps until ctx ends,
// and checks that the rollups are kept at loc's zone: a daemon that started at the same
// moment with another zone may have rebuilt them since syncRollups. The lock is taken again
// if its connection is lost; should the rollups meanwhile be kept at another zone, that is
// logged as an error.
func holdZone(ctx context.Context, db *sql.DB, loc *time.Location, log *slog.Logger) error {
	conn, err := takeZoneLock(ctx, db, loc)
	if err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(zoneCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				if conn != nil {
					conn.Close()
				}
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(ctx, writeTimeout)
			if conn != nil && conn.PingContext(pctx) != nil {
				conn.Close()
				conn = nil
			}
			if conn == nil {
				var lost error
				if conn, lost = takeZoneLock(pctx, db, loc); lost != nil && ctx.Err() == nil {
					log.Error("cannot hold the lock that keeps other zones from rebuilding the rollups: trying again", "err", lost)
				}
			}
			cancel()
		}
	}()
	return nil
}

// zoneCheckEvery is how often a daemon checks that it still holds zoneLockID.
const zoneCheckEvery = 10 * time.Second

// takeZoneLock takes zoneLockID, shared, on a new connection of db and returns it, after
// checking that the rollups are kept at loc's zone.
func takeZoneLock(ctx context.Context, db *sql.DB, loc *time.Location) (*sql.Conn, error) {
	zone := zoneName(loc)
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock the zone of the rollups: %w", err)
	}
	var locked bool
	var inUse sql.NullString
	err = conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock_shared($1),
		(SELECT value FROM oxitraffic_meta WHERE key = 'rollup_zone')`, zoneLockID).Scan(&locked, &inUse)
	switch {
	case err != nil:
		err = fmt.Errorf("lock the zone of the rollups: %w", err)
	case !locked:
		// A start is rebuilding the rollups for another zone than theirs.
		err = errZoneInUse(zone, "another zone, to which a daemon starting now rebuilds them")
	case inUse.String != zone:
		err = errZoneInUse(zone, inUse.String)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
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

// rebuildRollups counts the rollups again from calls, at loc, calling progress every few
// seconds while PostgreSQL works. PostgreSQL is given the instants at which loc's offset
// changes (see zonePeriods), not the zone's name, so that it makes the days and hours of the
// calendar.
func rebuildRollups(ctx context.Context, tx *sql.Tx, loc *time.Location, progress startProgress, log *slog.Logger) error {
	var hasCalls bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM calls)").Scan(&hasCalls); err != nil {
		return fmt.Errorf("rebuild rollups: %w", err)
	}
	if hasCalls {
		log.Info("rebuilding the rollups from calls", "zone", zoneName(loc))
		progress()
		defer whileRunning(progress)()
	}
	start := time.Now()
	changes, offsets := zonePeriods(loc)
	stamps := make([]string, len(changes))
	for i, c := range changes {
		stamps[i] = c.Format(utcStamp)
	}
	zone := []any{pq.Array(offsets)}
	if len(changes) > 0 {
		zone = append(zone, pq.Array(stamps))
	}
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
		{rebuildHoursSQL(len(changes) > 0), zone},
		{rebuildDaysSQL(len(changes) > 0), zone},
		{"INSERT INTO path_counts (path_id, count, first_call) SELECT path_id, count(*), min(timestamp) FROM calls GROUP BY 1", nil},
		{`INSERT INTO oxitraffic_meta (key, value) VALUES ('rollup_zone', $1), ('rollup_version', $2)
		  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, []any{zoneName(loc), rollupVersion}},
		// What the rollups were made for before there were zones.
		{"DELETE FROM oxitraffic_meta WHERE key = 'rollup_offset'", nil},
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

// utcStamp formats an instant, at UTC, as a PostgreSQL timestamp without time zone: how
// site_hourly keys its hours.
const utcStamp = "2006-01-02 15:04:05.999999"

// offsetAt is the UTC offset in seconds, as an interval, at the UTC timestamp col, of a zone
// given as its offsets ($1) before and after the instants of its changes ($2, UTC
// timestamps); without changes, the one offset, and no $2.
func offsetAt(col string, changes bool) string {
	if !changes {
		return `($1::int8[])[1] * interval '1 second'`
	}
	return `($1::int8[])[width_bucket(` + col + `, $2::timestamp[]) + 1] * interval '1 second'`
}

// rebuildHoursSQL counts site_hourly from calls: each call's hour starts at the call less its
// minutes and seconds on the local clock, taken twice as hourStart does.
func rebuildHoursSQL(changes bool) string {
	return fmt.Sprintf(`
	INSERT INTO site_hourly (hour, count)
	SELECT date_trunc('hour', k + %s) - %[1]s, sum(n) FROM (
		SELECT date_trunc('hour', u + %s) - %[2]s AS k, count(*) AS n
		FROM (SELECT timestamp AT TIME ZONE 'UTC' AS u FROM calls) c GROUP BY 1
	) h GROUP BY 1`, offsetAt("k", changes), offsetAt("u", changes))
}

// rebuildDaysSQL counts daily_calls from calls, at the local date of each.
func rebuildDaysSQL(changes bool) string {
	return fmt.Sprintf(`
	INSERT INTO daily_calls (path_id, day, count)
	SELECT path_id, (u + %s)::date, count(*)
	FROM (SELECT path_id, timestamp AT TIME ZONE 'UTC' AS u FROM calls) c GROUP BY 1, 2`, offsetAt("u", changes))
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
