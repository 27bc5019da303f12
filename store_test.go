package main

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestDatabaseOfTheOriginalKeepsItsHistory checks that a database of the original OxiTraffic is merged and keeps its counts.
func TestDatabaseOfTheOriginalKeepsItsHistory(t *testing.T) {
	dbCfg, db := newTestDB(t)
	// The original's tables, without a unique path, with one path in two rows.
	execAll(t, db,
		"CREATE TABLE paths (id SERIAL PRIMARY KEY, path TEXT NOT NULL)",
		"CREATE TABLE calls (id BIGSERIAL PRIMARY KEY, path_id INTEGER NOT NULL REFERENCES paths (id), timestamp TIMESTAMPTZ NOT NULL)",
		"INSERT INTO paths (path) VALUES ('blog'), ('about'), ('blog')",
		"INSERT INTO calls (path_id, timestamp) VALUES (1, '2024-01-01T10:00:00Z'), (2, '2024-01-02T10:00:00Z'), (3, '2024-01-03T10:00:00Z'), (3, '2024-01-04T23:30:00Z')",
	)
	st := newSite(t)
	d := &daemon{dbCfg: dbCfg, db: db, site: st, dataDir: writeDataDir(t, dbCfg, st.URL, "")}
	d.start(t, nil)

	if status, body := get(t, d.url+"/api/counts"); body != `[{"path":"blog","count":3},{"path":"about","count":1}]`+"\n" {
		t.Errorf("GET /api/counts on the original's database = %d %s; want blog 3, about 1", status, body)
	}
	var rows int
	db.QueryRow("SELECT count(*) FROM paths WHERE path = 'blog'").Scan(&rows)
	if rows != 1 {
		t.Errorf("paths rows for blog after the merge = %d; want 1", rows)
	}
	d.call(t, "/blog", "203.0.113.1")
	if _, body := get(t, d.url+"/api/count/blog"); body != "4\n" {
		t.Errorf("GET /api/count/blog after a new call = %q; want 4", body)
	}
	if status, _ := get(t, d.url+"/api/history/blog"); status != 200 {
		t.Errorf("GET /api/history/blog = %d; want 200", status)
	}

	// Applying the schema again changes nothing.
	if err := applySchema(context.Background(), db); err != nil {
		t.Fatalf("applying the schema a second time: %v", err)
	}
	d.stop(t)
	d.start(t, nil)
	if _, body := get(t, d.url+"/api/count/blog"); body != "4\n" {
		t.Errorf("after a restart GET /api/count/blog = %q; want 4", body)
	}
}

// TestRollupsFollowTheOffset checks that the daily rollup is rebuilt when the UTC offset changes.
func TestRollupsFollowTheOffset(t *testing.T) {
	_, db := newTestDB(t)
	if err := applySchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	execAll(t, db,
		"INSERT INTO paths (path) VALUES ('blog')",
		"INSERT INTO calls (path_id, timestamp) VALUES (1, '2024-01-04T23:30:00Z')",
	)
	for _, c := range []struct {
		offset int
		day    string
	}{{0, "2024-01-04"}, {3600, "2024-01-05"}, {-3600, "2024-01-04"}} {
		if err := syncRollups(context.Background(), db, time.FixedZone("", c.offset), func() {}, discardLog()); err != nil {
			t.Fatal(err)
		}
		var day string
		db.QueryRow("SELECT day::text FROM daily_calls").Scan(&day)
		if day != c.day {
			t.Errorf("day of 2024-01-04T23:30Z at offset %ds = %s; want %s", c.offset, day, c.day)
		}
	}
}

// TestRollupsAddUpLikeARebuild checks that the rollups the writer adds up in memory are those
// a rebuild from calls makes, days at the offset included, also around midnight.
func TestRollupsAddUpLikeARebuild(t *testing.T) {
	times := []string{
		"2024-01-04T23:59:59.999999Z", "2024-01-05T00:00:00Z", "2024-01-04T18:29:59Z", "2024-01-04T18:30:00Z",
		"2024-01-04T10:00:00Z", "2024-01-04T13:59:59Z", "2024-01-04T14:00:00Z", "1969-12-31T23:00:00Z",
	}
	for _, offset := range []int{0, 5*3600 + 1800, -10 * 3600, 14 * 3600} {
		_, db := newTestDB(t)
		ctx := context.Background()
		if err := applySchema(ctx, db); err != nil {
			t.Fatal(err)
		}
		execAll(t, db, "INSERT INTO paths (path) VALUES ('blog'), ('about')")
		s, err := newStore(ctx, db, db, db, 100, time.FixedZone("", offset), discardLog())
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range times {
			at, _ := time.Parse(time.RFC3339Nano, v)
			if !s.reserveCall() {
				t.Fatal("queue full")
			}
			<-s.recordCall(int32(1+i%2), at).done
		}
		if err := s.w.requestFlush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.w.close(ctx); err != nil {
			t.Fatal(err)
		}
		written := rollupRows(t, db)
		execAll(t, db, "DELETE FROM oxitraffic_meta")
		if err := syncRollups(ctx, db, time.FixedZone("", offset), func() {}, discardLog()); err != nil {
			t.Fatal(err)
		}
		if rebuilt := rollupRows(t, db); written != rebuilt {
			t.Errorf("offset %ds: rollups written by the writer:\n%s\nrebuilt from calls:\n%s", offset, written, rebuilt)
		}
	}
}

// rollupRows returns the rows of both rollups as text, in order.
func rollupRows(t *testing.T, db *sql.DB) string {
	t.Helper()
	var out string
	err := db.QueryRow(`SELECT
		(SELECT string_agg(format('%s %s %s', path_id, day, count), E'\n' ORDER BY path_id, day) FROM daily_calls) || E'\n' ||
		(SELECT string_agg(format('%s %s %s', path_id, count, first_call AT TIME ZONE 'UTC'), E'\n' ORDER BY path_id) FROM path_counts) || E'\n' ||
		coalesce((SELECT string_agg(format('%s %s', hour, count), E'\n' ORDER BY hour) FROM site_hourly), '')`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStaleClustersAreRemoved checks that a throwaway cluster whose test process is gone,
// as after a SIGKILL, is stopped and removed by the next run, and that a live one is not.
func TestStaleClustersAreRemoved(t *testing.T) {
	_, db := newTestDB(t)
	cfg, stop, err := startCluster()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Host, ownerFile), []byte(strconv.Itoa(gone.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	server, err := serverPID(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	if !processAlive(server) {
		t.Fatalf("the second cluster's server (PID %d) is not running", server)
	}

	bin, _ := pgBinDir()
	cred, _, _, _ := clusterUser()
	removeStaleClusters(bin, cred)
	if processAlive(server) {
		t.Errorf("the server of a cluster whose test process is gone (PID %d) still runs", server)
	}
	if _, err := os.Stat(cfg.Host); !os.IsNotExist(err) {
		t.Errorf("the folder of a stale cluster is still there: %s (%v)", cfg.Host, err)
	}
	if err := db.Ping(); err != nil {
		t.Errorf("this run's own cluster after removing stale ones: %v", err)
	}
}

// TestStartAddsTheJournalThatACrashLeft checks that at start, with rollups made for the
// configured offset, the journal rows that no flush deleted (a crash) are added to the
// rollups and deleted, and that nothing else is counted again.
func TestStartAddsTheJournalThatACrashLeft(t *testing.T) {
	_, db := newTestDB(t)
	ctx := context.Background()
	if err := applySchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	execAll(t, db,
		"INSERT INTO paths (path) VALUES ('blog'), ('about')",
		"INSERT INTO calls (path_id, timestamp) VALUES (1, '2024-01-01T10:00:00Z'), (1, '2024-01-02T10:00:00Z'), (2, '2024-01-02T11:00:00Z')",
	)
	if err := syncRollups(ctx, db, time.UTC, func() {}, discardLog()); err != nil {
		t.Fatal(err)
	}
	// Two batches of blog written with their journal rows but not added to the rollups, as
	// after a crash; a mark on about shows whether anything was counted again.
	execAll(t, db,
		"INSERT INTO calls (path_id, timestamp) VALUES (1, '2024-01-02T12:00:00Z'), (1, '2024-01-03T09:00:00Z')",
		"INSERT INTO oxitraffic_writes (daemon, seq, dp, dd, dn, pp, pn, pf, sh, sn) VALUES (7, 1, '{1}', '{19724}', '{1}', '{1}', '{1}', '{1704196800000000}', '{473388}', '{1}')",
		"INSERT INTO oxitraffic_writes (daemon, seq, dp, dd, dn, pp, pn, pf, sh, sn) VALUES (7, 2, '{1}', '{19725}', '{1}', '{1}', '{1}', '{1704272400000000}', '{473409}', '{1}')",
		"INSERT INTO oxitraffic_writes (daemon, seq, dp, dd, dn, pp, pn, pf, sh, sn, rolled) VALUES (7, 3, '{1}', '{19725}', '{9}', '{1}', '{9}', '{1704272400000000}', '{473409}', '{9}', true)",
		"UPDATE path_counts SET first_call = '2000-01-01T00:00:00Z' WHERE path_id = 2",
	)
	var log syncBuffer
	if err := syncRollups(ctx, db, time.UTC, func() {}, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	want := "1 2024-01-01 1\n1 2024-01-02 2\n1 2024-01-03 1\n2 2024-01-02 1\n" +
		"1 4 2024-01-01 10:00:00\n2 1 2000-01-01 00:00:00\n" +
		"2024-01-01 10:00:00 1\n2024-01-02 10:00:00 1\n2024-01-02 11:00:00 1\n2024-01-02 12:00:00 1\n2024-01-03 09:00:00 1"
	if got := rollupRows(t, db); got != want {
		t.Errorf("rollups after the check:\n%s\nwant (the journal added, about untouched):\n%s", got, want)
	}
	if !strings.Contains(log.String(), "batches=2") {
		t.Errorf("log of the check = %q; want it to say that two batches were added", log.String())
	}
	var left int
	db.QueryRow("SELECT count(*) FROM oxitraffic_writes WHERE NOT rolled").Scan(&left)
	if left != 0 {
		t.Errorf("journal rows not rolled after the check = %d; want 0", left)
	}
}

// newWriterStore returns a store on a fresh database whose path blog is known, writing on
// a pool of its own as a daemon does, and the database's settings and handle for the test.
func newWriterStore(t *testing.T) (*store, DBConfig, *sql.DB) {
	t.Helper()
	dbCfg, db := newTestDB(t)
	if err := applySchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	execAll(t, db, "INSERT INTO paths (path) VALUES ('blog')")
	if err := syncRollups(context.Background(), db, time.UTC, func() {}, discardLog()); err != nil {
		t.Fatal(err)
	}
	return storeOn(t, dbCfg, db), dbCfg, db
}

// storeOn returns another store on the database of dbCfg, whose schema is applied, with a
// write pool of its own; it writes its queue and stops when the test ends.
func storeOn(t *testing.T, dbCfg DBConfig, db *sql.DB) *store {
	t.Helper()
	ctx := context.Background()
	writeDB, err := openDB(ctx, dbCfg, writePool, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	s, err := newStore(ctx, db, db, writeDB, 1000, time.UTC, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.w.close(ctx); writeDB.Close() })
	return s
}

// recordNow records one call of blog through the store's door, as /call does, and reports
// whether its batch was committed.
func recordNow(t *testing.T, s *store) bool {
	t.Helper()
	if !s.reserveCall() {
		t.Fatal("queue full")
	}
	b := s.recordCall(1, time.Now())
	<-b.done
	return b.ok
}

// TestFlushDoesNotHoldTheBatches checks that while a flush of the rollups waits (here for a
// lock that a reader of site_hourly holds), calls are still committed and acknowledged, and
// that once it goes on the rollups hold every call once.
func TestFlushDoesNotHoldTheBatches(t *testing.T) {
	s, _, db := newWriterStore(t)
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("LOCK TABLE site_hourly IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	if !recordNow(t, s) {
		t.Fatal("first call not committed")
	}
	flushWaits := func() bool {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE NOT l.granted AND a.datname = current_database() AND a.query LIKE '%oxitraffic_writes%'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	waitFor(t, 10*time.Second, "the flush to wait for the lock", flushWaits)

	var committed atomic.Int64
	concurrently(20, func(int) {
		if recordNow(t, s) {
			committed.Add(1)
		}
	})
	if n := committed.Load(); n != 20 {
		t.Errorf("calls committed while a flush waits = %d; want 20", n)
	}
	if !flushWaits() {
		t.Error("the flush stopped waiting before the calls were acknowledged; want the calls committed while it waits")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := s.w.requestFlush(ctx); err != nil {
		t.Fatalf("requestFlush() after the lock = %v; want nil", err)
	}
	if daily, total := rollupSums(t, db); daily != 21 || total != 21 {
		t.Errorf("rollups after the flush: %d calls by day, %d by path; want 21 each", daily, total)
	}
	if n, err := s.count(ctx, "blog"); n != 21 || err != nil {
		t.Errorf("count(blog) = %d, %v; want 21", n, err)
	}
}
