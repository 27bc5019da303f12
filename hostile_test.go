package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pgProxy forwards TCP connections on 127.0.0.1 to a test cluster's unix socket, and can
// break them as a network would: cut a connection right after PostgreSQL answered an
// INSERT (so the client never learns that it committed), or stall every connection.
type pgProxy struct {
	ln     net.Listener
	target string
	cuts   atomic.Int32 // answers still to swallow, cutting their connection
	cut    atomic.Int32 // connections cut so far
	stall  atomic.Bool
	match  atomic.Pointer[string] // the command tag of the answers to cut: "INSERT 0 " by default
}

// startPGProxy starts a proxy to the cluster of cfg and returns the settings that reach
// the cluster through it.
func startPGProxy(t *testing.T, cfg DBConfig) (*pgProxy, DBConfig) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	cfg.Host, cfg.Port = "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
	return p, cfg
}

// serve forwards one client connection.
func (p *pgProxy) serve(client net.Conn) {
	server, err := net.Dial("unix", p.target)
	if err != nil {
		client.Close()
		return
	}
	closeBoth := func() { client.Close(); server.Close() }
	go func() {
		p.copy(server, client, false)
		closeBoth()
	}()
	p.copy(client, server, true)
	closeBoth()
}

// copy forwards src to dst, holding the bytes while the proxy stalls; answers of
// PostgreSQL (fromServer) to an INSERT end the connection while cuts remain.
func (p *pgProxy) copy(dst, src net.Conn, fromServer bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		for p.stall.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			tag := "INSERT 0 "
			if m := p.match.Load(); m != nil {
				tag = *m
			}
			if fromServer && bytes.Contains(buf[:n], []byte(tag)) && p.cuts.Add(-1) >= 0 {
				p.cut.Add(1)
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestLostCommitAnswersWriteNoDuplicate checks that when the connection breaks after
// PostgreSQL committed a batch or a rollup flush, but before the daemon heard so, the
// batch is not written twice and the flush not added twice.
func TestLostCommitAnswersWriteNoDuplicate(t *testing.T) {
	dbCfg, db := newTestDB(t)
	proxy, viaProxy := startPGProxy(t, dbCfg)
	st := newSite(t)
	d := &daemon{dbCfg: dbCfg, db: db, site: st, dataDir: writeDataDir(t, viaProxy, st.URL, "")}
	d.start(t, nil)
	if resp := d.call(t, "/blog", "203.0.113.1"); resp.Header.Get("X-OxiTraffic") != "counted" {
		t.Fatalf("first call = %q; want counted", resp.Header.Get("X-OxiTraffic"))
	}

	// The answer to a batch's INSERT; then three, so that database/sql's own retries fail
	// too and the writer sends the batch again later, while new calls come; then the
	// answer to the rollup flush that follows a second later when no call comes; then any
	// six answers under load.
	var acknowledged atomic.Int64
	proxy.cuts.Store(1)
	if got := d.call(t, "/blog", "203.0.113.2").Header.Get("X-OxiTraffic"); got != "counted" && got != "queued" {
		t.Errorf("call whose COMMIT answer was cut = %q; want counted or queued", got)
	}
	acknowledged.Add(1)
	proxy.cuts.Store(3)
	concurrently(6, func(i int) {
		time.Sleep(time.Duration(i) * 20 * time.Millisecond)
		if h := d.call(t, "/blog", fmt.Sprintf("203.0.113.%d", 10+i)).Header.Get("X-OxiTraffic"); h == "counted" || h == "queued" {
			acknowledged.Add(1)
		}
	})
	waitFor(t, 10*time.Second, "the batch to be sent again", func() bool { return d.queueEmpty(t) })
	// The flush answers one row (the rollup generation): "SELECT 1". Another query of the
	// writer may take the cut first; then another call and another try.
	flushed := func() bool {
		logs, _ := os.ReadFile(filepath.Join(d.dataDir, logFileName))
		return strings.Contains(string(logs), "had committed: not added again")
	}
	selectTag, insertTag := "SELECT 1", "INSERT 0 "
	for try := 0; try < 5 && !flushed(); try++ {
		d.call(t, "/blog", fmt.Sprintf("203.0.113.%d", 100+try))
		acknowledged.Add(1)
		proxy.match.Store(&selectTag)
		proxy.cuts.Store(1)
		deadline := time.Now().Add(4 * time.Second)
		for !flushed() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		proxy.cuts.Store(0)
	}
	if !flushed() {
		t.Fatal("no rollup flush was cut and sent again")
	}
	proxy.match.Store(&insertTag)
	proxy.cuts.Store(6)
	concurrently(8, func(i int) {
		for j := range 40 {
			resp := d.call(t, "/blog", fmt.Sprintf("198.51.%d.%d", i, j))
			if h := resp.Header.Get("X-OxiTraffic"); h == "counted" || h == "queued" {
				acknowledged.Add(1)
			}
			if j%10 == 0 {
				time.Sleep(300 * time.Millisecond) // let rollup flushes run between calls
			}
		}
	})
	waitFor(t, 30*time.Second, "the calls to be written", func() bool { return d.queueEmpty(t) })
	d.stop(t)

	var rows, total, daily, journal int64
	db.QueryRow("SELECT count(*) FROM calls").Scan(&rows)
	db.QueryRow("SELECT coalesce(sum(count), 0) FROM path_counts").Scan(&total)
	db.QueryRow("SELECT coalesce(sum(count), 0) FROM daily_calls").Scan(&daily)
	db.QueryRow("SELECT count(*) FROM oxitraffic_writes").Scan(&journal)
	if want := acknowledged.Load() + 1; rows != want {
		t.Errorf("rows after %d cut answers = %d; want %d, one per acknowledged call", proxy.cut.Load(), rows, want)
	}
	if total != rows || daily != rows {
		t.Errorf("rollups after %d cut answers: path_counts %d, daily_calls %d; want both %d", proxy.cut.Load(), total, daily, rows)
	}
	if journal != 0 {
		t.Errorf("journal rows after a clean stop = %d; want 0", journal)
	}
	logs, _ := os.ReadFile(filepath.Join(d.dataDir, logFileName))
	batches, flushes := strings.Count(string(logs), "had committed: not written again"), strings.Count(string(logs), "had committed: not added again")
	if batches == 0 || flushes == 0 {
		t.Errorf("after %d cut answers the daemon found %d batches and %d rollup flushes already written; want at least one of each:\n%s",
			proxy.cut.Load(), batches, flushes, logs)
	}
}

// TestStalledDatabaseDoesNotHangCalls checks that when PostgreSQL stops answering without
// closing anything (a cut network, a stalled disk), visitors still get their image within
// the write timeout, /healthz answers, and every call is written once it answers again.
func TestStalledDatabaseDoesNotHangCalls(t *testing.T) {
	dbCfg, db := newTestDB(t)
	proxy, viaProxy := startPGProxy(t, dbCfg)
	st := newSite(t)
	d := &daemon{dbCfg: dbCfg, db: db, site: st, dataDir: writeDataDir(t, viaProxy, st.URL, "")}
	d.start(t, nil)
	d.call(t, "/blog", "203.0.113.1")

	proxy.stall.Store(true)
	start := time.Now()
	concurrently(4, func(i int) {
		resp := d.call(t, "/blog", fmt.Sprintf("198.51.100.%d", i+1))
		if resp.StatusCode != 200 {
			t.Errorf("call with PostgreSQL stalled = %d; want 200 and the image", resp.StatusCode)
		}
	})
	if took := time.Since(start); took > writeTimeout+time.Second {
		t.Errorf("calls with PostgreSQL stalled took %s; want at most the write timeout, %s", took, writeTimeout)
	}
	start = time.Now()
	status, _ := get(t, d.url+"/healthz")
	if took := time.Since(start); took > healthWait+time.Second {
		t.Errorf("GET /healthz with PostgreSQL stalled took %s (%d); want an answer within %s", took, status, healthWait)
	}
	proxy.stall.Store(false)

	waitFor(t, 30*time.Second, "the calls made while PostgreSQL stalled to be written", func() bool {
		return d.rows(t, "blog") >= 5
	})
	d.stop(t)
	if n := d.rows(t, "blog"); n != 5 {
		t.Errorf("rows after the stall = %d; want 5", n)
	}
}

// waitFor polls cond every 50 ms until it holds, and fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSlowReadersDoNotStarveTheWriter checks that twenty clients reading a busy page's
// history and hourly plot at 2 KB/s leave new visitors counted within a second and
// /healthz at 200.
func TestSlowReadersDoNotStarveTheWriter(t *testing.T) {
	d := startDaemon(t, "")
	d.call(t, "/blog", "203.0.113.1")
	execAll(t, d.db, `INSERT INTO calls (path_id, timestamp)
		SELECT (SELECT id FROM paths WHERE path = 'blog'), now() - g * interval '7 seconds' FROM generate_series(1, 300000) g`)

	host := strings.TrimPrefix(d.url, "http://")
	targets := []string{"/api/history/blog", "/dashboard/plot/blog?by=hour", "/api/history/blog?by=hour&from=2000-01-01", "/dashboard/plot/blog?range=30d&by=hour"}
	var slow []net.Conn
	for i := range 20 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", targets[i%len(targets)], host)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
				c.Read(buf)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
		for _, c := range slow {
			c.Close()
		}
	}()
	time.Sleep(time.Second) // the readers have asked and read their first bytes

	for i := range 20 {
		start := time.Now()
		resp := d.call(t, "/blog", fmt.Sprintf("198.51.100.%d", i+1))
		if got := resp.Header.Get("X-OxiTraffic"); got != "counted" {
			t.Errorf("new visitor %d with twenty slow readers = %q; want counted", i, got)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("new visitor %d with twenty slow readers took %s; want under a second", i, took)
		}
	}
	if status, body := get(t, d.url+"/healthz"); status != 200 {
		t.Errorf("GET /healthz with twenty slow readers = %d %q; want 200", status, body)
	}
}

// TestEveryRangeIsBounded checks that each range of the API and the plot pages, whatever
// its parameters, is refused with 400 and a reason, or answered within a bounded size.
func TestEveryRangeIsBounded(t *testing.T) {
	d := startDaemon(t, "")
	d.addCalls(t, "blog", 0, "2024-01-01T10:00:00Z", "2025-06-01T10:00:00Z", "2026-01-01T10:00:00Z")
	d.addCalls(t, "about", 0, "0001-01-01T10:00:00Z", "2026-01-01T10:00:00Z")
	const maxAnswer = 2 << 20 // the README's bound on any answer
	for _, c := range []struct {
		url    string
		status int
	}{
		{"/api/history/blog?by=day&to=9000-01-01", 400},
		{"/api/history/blog?by=week&from=0001-01-01", 400},
		{"/api/history/blog?by=month&from=0001-01-01&to=9000-01-01", 400},
		{"/api/history/blog?by=hour", 400},
		{"/api/history/blog?by=hour&from=2020-01-01", 400},
		{"/api/history/blog?by=hour&to=2030-01-01", 400},
		{"/api/history/blog?by=day&from=1900-01-01&to=2100-01-01", 400},
		{"/api/history/blog?from=0000-01-01", 400},
		{"/api/history/blog?from=10000-01-01", 400},
		{"/api/history/blog?by=minute", 400},
		{"/api/history/blog?after=x", 400},
		{"/api/history/blog?after=0.49999999", 400},
		{"/api/history/blog?after=-99999999999999999.0", 400},
		{"/api/history/blog?after=1704103200000000.0", 200},
		{"/api/history/about?by=day", 400},
		{"/api/history/about?by=month", 400},
		{"/api/history/blog?by=month", 200},
		{"/api/history/blog?by=day", 200},
		{"/api/history/blog?by=week&from=1970-01-01&to=2100-01-01", 200},
		{"/api/history/blog?by=month&from=1970-01-01&to=9000-01-01", 400},
		{"/api/history/blog?by=day&from=1970-01-01", 400},
		{"/api/history/blog?by=hour&from=2024-01-01&to=2024-01-02", 200},
		{"/api/history/blog?from=1970-01-01&to=9999-12-31", 200},
		{"/api/history/blog?to=1970-01-02", 200},
		{"/api/history/blog?to=0001-01-02", 400},
		{"/api/history/blog", 200},
		{"/dashboard/plot/blog?range=all&by=hour", 200},
		{"/dashboard/plot/blog?range=1y&by=hour", 200},
		{"/dashboard/plot/about?range=all", 200},
		{"/dashboard/plot/about?range=all&by=hour", 200},
		{"/dashboard/plot/blog?range=all&by=year", 400},
		{"/dashboard/plot/blog?range=10y", 400},
	} {
		start := time.Now()
		resp, err := http.Get(d.url + c.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
		resp.Body.Close()
		took := time.Since(start)
		switch {
		case resp.StatusCode != c.status:
			t.Errorf("GET %s = %d %.200s; want %d", c.url, resp.StatusCode, body, c.status)
		case len(body) > maxAnswer:
			t.Errorf("GET %s answered more than %d bytes", c.url, maxAnswer)
		case c.status == 400 && !strings.Contains(string(body), "from") && !strings.Contains(string(body), "by=") &&
			!strings.Contains(string(body), "range=") && !strings.Contains(string(body), "after="):
			t.Errorf("GET %s = 400 %q; want the reason", c.url, body)
		case took > 2*time.Second:
			t.Errorf("GET %s took %s; want a fast answer", c.url, took)
		}
	}
}

// TestRawHistoryIsPaged checks that a history longer than a page is answered in pages that
// the Link header chains, with calls sharing a microsecond across a page's end, and that
// the pages together are every call in order.
func TestRawHistoryIsPaged(t *testing.T) {
	d := startDaemon(t, "")
	d.call(t, "/blog", "203.0.113.1")
	execAll(t, d.db, `INSERT INTO calls (path_id, timestamp)
		SELECT (SELECT id FROM paths WHERE path = 'blog'), timestamp '2025-01-01 00:00:00+00' + (g / 3) * interval '1 microsecond'
		FROM generate_series(1, 120000) g`)
	var want int
	d.db.QueryRow("SELECT count(*) FROM calls").Scan(&want)

	var all []string
	next, pages := "/api/history/blog?from=2024-01-01", 0
	for next != "" {
		resp, err := http.Get(d.url + next)
		if err != nil {
			t.Fatal(err)
		}
		var page []string
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("GET %s = %d %.200s", next, resp.StatusCode, body)
		}
		if len(page) > historyPageSize {
			t.Fatalf("GET %s answered %d times; want at most %d", next, len(page), historyPageSize)
		}
		all = append(all, page...)
		pages++
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			next = strings.TrimPrefix(strings.TrimSuffix(link, `>; rel="next"`), "<")
		}
		if pages > 10 {
			t.Fatal("more than 10 pages")
		}
	}
	if len(all) != want || pages != 3 {
		t.Errorf("pages of the history: %d times in %d pages; want %d in 3", len(all), pages, want)
	}
	for i := 1; i < len(all); i++ {
		if all[i] < all[i-1] {
			t.Fatalf("time %d (%s) is before time %d (%s)", i, all[i], i-1, all[i-1])
		}
	}
}

// TestPathVariantsAreOnePath checks that repeated slashes, written or percent-encoded,
// give one path row, as the web server serves one page.
func TestPathVariantsAreOnePath(t *testing.T) {
	d := startDaemon(t, "")
	for i, p := range []string{"/blog/post-1", "/blog%2F%2Fpost-1", "/blog/%2Fpost-1", "/blog//post-1", "//blog///post-1/", "/blog%2Fpost-1"} {
		if resp := d.call(t, p, fmt.Sprintf("203.0.113.%d", i+1)); resp.StatusCode != 200 {
			t.Errorf("GET /call%s = %d; want 200", p, resp.StatusCode)
		}
	}
	var paths []string
	rows, err := d.db.Query("SELECT path FROM paths ORDER BY path")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p string
		rows.Scan(&p)
		paths = append(paths, p)
	}
	rows.Close()
	if len(paths) != 1 || paths[0] != "blog/post-1" {
		t.Errorf("path rows after six spellings of one page = %q; want [blog/post-1]", paths)
	}
	if n := d.rows(t, "blog/post-1"); n != 6 {
		t.Errorf("calls of blog/post-1 = %d; want 6, one per visitor", n)
	}
}

// TestWatchdogOutlivesAnOutage checks that WATCHDOG=1 keeps coming through a PostgreSQL
// outage several watchdog intervals long, and that every call queued meanwhile is written
// afterwards.
func TestWatchdogOutlivesAnOutage(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	var pings []time.Time
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "WATCHDOG=1" {
				mu.Lock()
				pings = append(pings, time.Now())
				mu.Unlock()
			}
		}
	}()
	const interval = time.Second
	d, cfg := startOwnCluster(t, "", map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": fmt.Sprint(interval.Microseconds())})
	d.call(t, "/blog", "203.0.113.1")

	pgCtl(t, cfg, "stop", "-m", "fast")
	outage := time.Now()
	for i := range 50 {
		if resp := d.call(t, "/blog", fmt.Sprintf("198.51.100.%d", i+1)); resp.Header.Get("X-OxiTraffic") != "queued" {
			t.Errorf("call %d during the outage = %q; want queued", i, resp.Header.Get("X-OxiTraffic"))
		}
		time.Sleep(100 * time.Millisecond) // the outage lasts five watchdog intervals
	}
	pgCtl(t, cfg, "start", "-w")
	back := time.Now()

	mu.Lock()
	var during []time.Time
	for _, p := range pings {
		if p.After(outage) && p.Before(back) {
			during = append(during, p)
		}
	}
	mu.Unlock()
	if len(during) < int(back.Sub(outage)/interval) {
		t.Errorf("WATCHDOG=1 during a %s outage: %d times; want one every half interval (%s)", back.Sub(outage).Round(time.Millisecond), len(during), interval/2)
	}
	for i := 1; i < len(during); i++ {
		if gap := during[i].Sub(during[i-1]); gap >= interval {
			t.Errorf("gap of %s between watchdog pings during the outage; systemd aborts after %s", gap, interval)
		}
	}

	waitFor(t, 30*time.Second, "the queued calls to be written", func() bool {
		status, _ := get(t, d.url+"/healthz")
		return status == 200 && d.queueEmpty(t)
	})
	d.stop(t)
	var rows int
	d.db.QueryRow("SELECT count(*) FROM calls").Scan(&rows)
	if rows != 51 {
		t.Errorf("rows after the outage = %d; want 51 (1 before, 50 queued)", rows)
	}
}

// queueEmpty reports whether the daemon's /metrics show no call waiting to be written.
func (d *daemon) queueEmpty(t *testing.T) bool {
	_, body := get(t, d.url+"/metrics")
	return strings.Contains(body, "\noxitraffic_queue_length 0\n")
}

// TestDroppedCallDoesNotMarkItsVisitor checks that a call dropped for a full queue leaves
// its visitor free to be counted later, and that a queued one does not.
func TestDroppedCallDoesNotMarkItsVisitor(t *testing.T) {
	d, cfg := startOwnCluster(t, "queue_size: 2\n", nil)
	d.call(t, "/blog", "203.0.113.1")

	pgCtl(t, cfg, "stop", "-m", "fast")
	for i, want := range []string{"queued", "queued", "dropped", "duplicate"} {
		visitor := fmt.Sprintf("198.51.100.%d", i+1)
		if i == 3 {
			visitor = "198.51.100.1"
		}
		if got := d.call(t, "/blog", visitor).Header.Get("X-OxiTraffic"); got != want {
			t.Errorf("call %d (visitor %s) with a queue of 2 during an outage = %q; want %q", i, visitor, got, want)
		}
	}
	pgCtl(t, cfg, "start", "-w")
	waitFor(t, 30*time.Second, "the queue to be written", func() bool { return d.queueEmpty(t) })
	if got := d.call(t, "/blog", "198.51.100.3").Header.Get("X-OxiTraffic"); got != "counted" {
		t.Errorf("visitor whose call was dropped, calling again = %q; want counted", got)
	}
	if got := d.call(t, "/blog", "198.51.100.2").Header.Get("X-OxiTraffic"); got != "duplicate" {
		t.Errorf("visitor whose call was queued, calling again = %q; want duplicate", got)
	}
}

// TestLongStartKeepsSystemdInformed checks that a start that rebuilds the rollups of a
// database with calls tells systemd that it needs more time.
func TestLongStartKeepsSystemdInformed(t *testing.T) {
	dbCfg, db := newTestDB(t)
	if err := applySchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	execAll(t, db, "INSERT INTO paths (path) VALUES ('blog')",
		"INSERT INTO calls (path_id, timestamp) SELECT 1, now() - g * interval '1 minute' FROM generate_series(1, 1000) g")
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st := newSite(t)
	d := &daemon{dbCfg: dbCfg, db: db, site: st, dataDir: writeDataDir(t, dbCfg, st.URL, "")}
	d.start(t, map[string]string{"NOTIFY_SOCKET": sock})
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "EXTEND_TIMEOUT_USEC=") {
		t.Errorf("first notification of a start that rebuilds the rollups = %q, %v; want EXTEND_TIMEOUT_USEC=...", buf[:n], err)
	}
	if _, body := get(t, d.url+"/api/count/blog"); body != "1000\n" {
		t.Errorf("GET /api/count/blog after the rebuild = %q; want 1000", body)
	}
}

// TestIdleOutageDoesNotSpin checks that an idle daemon waits between its tries while
// PostgreSQL is down, longer than the interval at which it adds crashed daemons' rows.
func TestIdleOutageDoesNotSpin(t *testing.T) {
	d, cfg := startOwnCluster(t, "", nil)
	d.call(t, "/blog", "203.0.113.1")
	time.Sleep(1500 * time.Millisecond) // the call is in the rollups
	pgCtl(t, cfg, "stop", "-m", "fast")
	time.Sleep(orphanEvery + 4*time.Second)
	logs, _ := os.ReadFile(filepath.Join(d.dataDir, logFileName))
	if n := strings.Count(string(logs), "\n"); n > 40 {
		t.Errorf("log lines after %s of an idle outage = %d; want a few, one per try", orphanEvery+4*time.Second, n)
	}
	pgCtl(t, cfg, "start", "-w")
}
