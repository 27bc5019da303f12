package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// secondDaemon starts another OxiTraffic on the database and tracked site of d.
func secondDaemon(t *testing.T, d *daemon) *daemon {
	t.Helper()
	e := &daemon{dbCfg: d.dbCfg, db: d.db, site: d.site, dataDir: writeDataDir(t, d.dbCfg, d.site.URL, "")}
	e.start(t, nil)
	return e
}

// agree waits until every daemon answers want for url, and fails the test after timeout.
func agree(t *testing.T, timeout time.Duration, url, want string, daemons ...*daemon) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, d := range daemons {
		for {
			status, body := get(t, d.url+url)
			if status == 200 && body == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s on %s = %d %.300q; want %.300q within %s", url, d.url, status, body, want, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// dayBuckets returns what /api/history/blog?by=day should answer, counted from the rows.
func (d *daemon) dayBuckets(t *testing.T) string {
	t.Helper()
	var out []bucketJSON
	rows, err := d.db.Query(`SELECT timestamp::date, count(*) FROM calls c JOIN paths p ON p.id = c.path_id
		WHERE p.path = 'blog' GROUP BY 1 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var day time.Time
		var n int64
		rows.Scan(&day, &n)
		out = append(out, bucketJSON{time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC).Format(time.RFC3339), n})
	}
	b, _ := json.Marshal(out)
	return string(b) + "\n"
}

// TestTwoDaemonsAgree checks two daemons on one database: calls alternating between them
// are counted once each and both answer the same counts, day buckets and site total within
// a few seconds; one restarted while the other takes calls; a path stored by one is known
// to the other.
func TestTwoDaemonsAgree(t *testing.T) {
	a := startDaemon(t, "")
	b := secondDaemon(t, a)
	both := []*daemon{a, b}

	for i := range 400 {
		d := both[i%2]
		if got := d.call(t, "/blog", fmt.Sprintf("198.51.%d.%d", i/256, i%256)).Header.Get("X-OxiTraffic"); got != "counted" {
			t.Fatalf("call %d on daemon %d = %q; want counted", i, i%2, got)
		}
	}
	if n := a.rows(t, "blog"); n != 400 {
		t.Fatalf("rows after 400 calls on two daemons = %d; want 400", n)
	}
	agree(t, 10*time.Second, "/api/count/blog", "400\n", a, b)
	agree(t, 10*time.Second, "/api/counts", `[{"path":"blog","count":400}]`+"\n", a, b)
	agree(t, 10*time.Second, "/api/history/blog?by=day", a.dayBuckets(t), a, b)

	// A path that only b has seen is counted and listed by a too, and not checked again.
	checks := a.site.requests.Load()
	b.call(t, "/about", "203.0.113.1")
	agree(t, 10*time.Second, "/api/counts", `[{"path":"blog","count":400},{"path":"about","count":1}]`+"\n", a, b)
	if got := a.call(t, "/about", "203.0.113.2").Header.Get("X-OxiTraffic"); got != "counted" {
		t.Errorf("call of a path the other daemon stored = %q; want counted", got)
	}
	if n := a.site.requests.Load() - checks; n != 1 {
		t.Errorf("checks of about on the tracked site = %d; want 1: a path one daemon stored needs no check by the other", n)
	}

	// b restarts while a takes calls.
	var taken atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			req, _ := http.NewRequest(http.MethodGet, a.url+"/call/blog", nil)
			req.Header.Set("User-Agent", desktopUA)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.Header.Get("X-OxiTraffic") == "counted" {
					taken.Add(1)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	b.stop(t)
	b.start(t, nil)
	<-done
	want := fmt.Sprintf("%d\n", 400+taken.Load())
	agree(t, 10*time.Second, "/api/count/blog", want, a, b)
	agree(t, 10*time.Second, "/api/history/blog?by=day", a.dayBuckets(t), a, b)
}

// TestTwoDaemonsSurviveAKill checks two daemons, real processes, on one database under
// load: one is killed with SIGKILL mid-load while the other goes on; after both stop and
// one starts, the counts, the day buckets and the rollups equal the rows, and no
// acknowledged call is lost.
func TestTwoDaemonsSurviveAKill(t *testing.T) {
	dbCfg, db := newTestDB(t)
	st := newSite(t)
	dirA, dirB := writeDataDir(t, dbCfg, st.URL, ""), writeDataDir(t, dbCfg, st.URL, "")
	pa, pb := startProcess(t, dirA), startProcess(t, dirB)

	stopA, stopB := make(chan struct{}), make(chan struct{})
	resA, resB := make(chan int64, 1), make(chan int64, 1)
	go func() { resA <- burst(pa.url, "/blog", 100_000, stopA) }()
	go func() { resB <- burstFrom(pb.url, "/blog", 100_000, 1<<20, stopB) }()
	time.Sleep(1500 * time.Millisecond)
	pb.cmd.Process.Kill()
	pb.cmd.Wait()
	close(stopB)
	time.Sleep(1500 * time.Millisecond)
	close(stopA)
	acknowledged := <-resA + <-resB
	pa.cmd.Process.Signal(syscall.SIGTERM)
	pa.cmd.Wait()

	p := startProcess(t, dirA)
	var rows int64
	db.QueryRow("SELECT count(*) FROM calls").Scan(&rows)
	if rows < acknowledged {
		t.Errorf("rows = %d; want at least the %d calls acknowledged as counted", rows, acknowledged)
	}
	var total, daily, hourly int64
	db.QueryRow("SELECT coalesce(sum(count), 0) FROM path_counts").Scan(&total)
	db.QueryRow("SELECT coalesce(sum(count), 0) FROM daily_calls").Scan(&daily)
	db.QueryRow("SELECT coalesce(sum(count), 0) FROM site_hourly").Scan(&hourly)
	if total != rows || daily != rows || hourly != rows {
		t.Errorf("after a kill and a restart: path_counts %d, daily_calls %d, site_hourly %d; want each %d, the rows", total, daily, hourly, rows)
	}
	if _, body := get(t, p.url+"/api/count/blog"); body != fmt.Sprintf("%d\n", rows) {
		t.Errorf("GET /api/count/blog after the restart = %q; want %d", body, rows)
	}
	d := &daemon{db: db}
	if _, body := get(t, p.url+"/api/history/blog?by=day"); body != d.dayBuckets(t) {
		t.Errorf("GET /api/history/blog?by=day after the restart = %s; want %s", body, d.dayBuckets(t))
	}
	t.Logf("%d calls acknowledged, %d rows", acknowledged, rows)
}

// TestSurvivorTakesWhatItAddsOfACrashedDaemon checks that a daemon that adds the journal
// rows of a daemon that crashed also counts them in memory.
func TestSurvivorTakesWhatItAddsOfACrashedDaemon(t *testing.T) {
	d := startDaemon(t, "")
	d.call(t, "/blog", "203.0.113.1")
	// What a daemon killed right after a batch leaves: the call and its journal row.
	execAll(t, d.db,
		"INSERT INTO calls (path_id, timestamp) SELECT id, now() - interval '1 minute' FROM paths WHERE path = 'blog'",
		`INSERT INTO oxitraffic_writes (daemon, seq, dp, dd, dn, pp, pn, pf, sh, sn, at)
		 SELECT 99, 1, ARRAY[id::int8], ARRAY[(extract(epoch FROM now()) / 86400)::int8], '{1}', ARRAY[id::int8], '{1}',
		        ARRAY[(extract(epoch FROM now() - interval '1 minute') * 1e6)::int8], ARRAY[(extract(epoch FROM now()) / 3600)::int8], '{1}',
		        now() - interval '1 minute'
		 FROM paths WHERE path = 'blog'`)
	agree(t, 25*time.Second, "/api/count/blog", "2\n", d)
	var total int64
	d.db.QueryRow("SELECT count FROM path_counts").Scan(&total)
	if total != 2 {
		t.Errorf("path_counts after the crashed daemon's row was added = %d; want 2", total)
	}
}

// TestTakenCountsKeepEveryAcknowledgedCall checks that the counts in memory of a daemon
// under load, which takes the rollups' counts after each flush that follows another
// daemon's, never fall below the calls it acknowledged, though its batches go on committing
// while it flushes and takes; and that the rollups end equal to the rows.
func TestTakenCountsKeepEveryAcknowledgedCall(t *testing.T) {
	a, dbCfg, db := newWriterStore(t)
	a.followPeers()
	// A second daemon with a call now and then: each of its flushes makes a take the counts.
	b := storeOn(t, dbCfg, db)
	b.followPeers()
	ctx := context.Background()

	var acknowledged, recorded atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			recorded.Add(1)
			recordNow(t, b)
		}
	}()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				recorded.Add(1)
				if recordNow(t, a) {
					acknowledged.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second) // five flushes of each
	for time.Now().Before(deadline) {
		want := acknowledged.Load()
		if n, err := a.count(ctx, "blog"); err != nil || n < want {
			t.Errorf("count(blog) under load = %d, %v; want at least the %d calls acknowledged before", n, err, want)
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err := errors.Join(a.w.close(ctx), b.w.close(ctx)); err != nil {
		t.Fatal(err)
	}
	var rows int64
	db.QueryRow("SELECT count(*) FROM calls").Scan(&rows)
	if rows != recorded.Load() || acknowledged.Load() == 0 {
		t.Errorf("rows = %d; want the %d recorded calls (%d acknowledged)", rows, recorded.Load(), acknowledged.Load())
	}
	if daily, total := rollupSums(t, db); daily != rows || total != rows {
		t.Errorf("rollups after the load: %d calls by day, %d by path; want the %d rows", daily, total, rows)
	}
}
