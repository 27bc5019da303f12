package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// process is the real oxitraffic binary, started on a data folder.
type process struct {
	cmd *exec.Cmd
	url string
	dir string // the data folder
}

// startProcess runs the built binary on dataDir and waits until it listens.
func startProcess(t *testing.T, dataDir string) *process {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "OXITRAFFIC_DATA_DIR="+dataDir)
	// Killed with the test process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				lines <- addr
			}
		}
		close(lines)
	}()
	select {
	case addr, ok := <-lines:
		if !ok {
			t.Fatal("oxitraffic exited before listening")
		}
		return &process{cmd: cmd, url: addr, dir: dataDir}
	case <-time.After(30 * time.Second):
		t.Fatal("oxitraffic did not listen within 30s")
	}
	return nil
}

// burst sends n calls of path from n distinct visitors, 32 at a time, and returns how many
// were answered 200 with X-OxiTraffic: counted. It stops early when stop is closed.
func burst(url, path string, n int, stop <-chan struct{}) int64 {
	return burstFrom(url, path, n, 0, stop)
}

// burstFrom is burst with the visitors numbered from first on, so that two bursts do not
// share visitors.
func burstFrom(url, path string, n, first int, stop <-chan struct{}) int64 {
	var counted atomic.Int64
	var wg sync.WaitGroup
	next := make(chan int)
	client := &http.Client{Timeout: 10 * time.Second}
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				req, _ := http.NewRequest(http.MethodGet, url+"/call"+path, nil)
				req.Header.Set("User-Agent", desktopUA)
				v := first + i
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", v>>16&255, v>>8&255, v&255))
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && resp.Header.Get("X-OxiTraffic") == "counted" {
					counted.Add(1)
				}
			}
		}()
	}
loop:
	for i := range n {
		select {
		case next <- i:
		case <-stop:
			break loop
		}
	}
	close(next)
	wg.Wait()
	return counted.Load()
}

// startBurst starts the binary on a fresh database and a burst of calls from distinct
// visitors against it; wait, after stop is closed, returns how many were acknowledged.
func startBurst(t *testing.T) (p *process, db *sql.DB, stop chan struct{}, wait func() int64) {
	t.Helper()
	dbCfg, db := newTestDB(t)
	st := newSite(t)
	p = startProcess(t, writeDataDir(t, dbCfg, st.URL, ""))
	stop = make(chan struct{})
	result := make(chan int64, 1)
	go func() { result <- burst(p.url, "/blog", 100_000, stop) }()
	return p, db, stop, func() int64 { return <-result }
}

// TestKill9LosesNoAcknowledgedCall checks that kill -9 during a burst loses no call answered as counted.
func TestKill9LosesNoAcknowledgedCall(t *testing.T) {
	p, db, stop, wait := startBurst(t)
	time.Sleep(1500 * time.Millisecond)
	// Kill while the burst is still sending, so calls are in flight.
	p.cmd.Process.Signal(syscall.SIGKILL)
	close(stop)
	counted := wait()
	var rows int64
	if err := db.QueryRow("SELECT count(*) FROM calls").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if counted == 0 {
		t.Fatal("no call was acknowledged before the kill")
	}
	if rows < counted {
		t.Errorf("rows after kill -9 = %d; want at least the %d acknowledged calls", rows, counted)
	}
	t.Logf("acknowledged %d, rows %d", counted, rows)

	// The rollups may lack the last calls before the kill; the next start completes them.
	p = startProcess(t, p.dir)
	if _, body := get(t, p.url+"/api/count/blog"); body != fmt.Sprintf("%d\n", rows) {
		t.Errorf("GET /api/count/blog after a restart = %q; want the %d rows", body, rows)
	}
	if daily, total := rollupSums(t, db); daily != rows || total != rows {
		t.Errorf("rollups after a restart: %d calls by day, %d by path; want the %d rows", daily, total, rows)
	}
}

// rollupSums returns the sums of the counts of the daily and per-path rollups.
func rollupSums(t *testing.T, db *sql.DB) (daily, total int64) {
	t.Helper()
	err := db.QueryRow("SELECT (SELECT coalesce(sum(count), 0)::int8 FROM daily_calls), (SELECT coalesce(sum(count), 0)::int8 FROM path_counts)").Scan(&daily, &total)
	if err != nil {
		t.Fatal(err)
	}
	return daily, total
}

// TestSIGTERMDrainsTheQueue checks that SIGTERM during a burst writes every acknowledged call and exits 0.
func TestSIGTERMDrainsTheQueue(t *testing.T) {
	p, db, stop, wait := startBurst(t)
	time.Sleep(time.Second)
	p.cmd.Process.Signal(syscall.SIGTERM)
	err := p.cmd.Wait()
	close(stop)
	counted := wait()
	if err != nil {
		t.Errorf("oxitraffic after SIGTERM exited with %v; want status 0", err)
	}
	var rows int64
	db.QueryRow("SELECT count(*) FROM calls").Scan(&rows)
	if rows < counted || counted == 0 {
		t.Errorf("rows after SIGTERM = %d; want at least the %d acknowledged calls (and some)", rows, counted)
	}
	if daily, total := rollupSums(t, db); daily != rows || total != rows {
		t.Errorf("rollups after SIGTERM: %d calls by day, %d by path; want the %d rows", daily, total, rows)
	}
}

// TestOutageQueuesCallsUntilPostgreSQLIsBack checks that calls made while PostgreSQL is down are written when it is back, up to queue_size.
func TestOutageQueuesCallsUntilPostgreSQLIsBack(t *testing.T) {
	d, cfg := startOwnCluster(t, "queue_size: 20\n", nil)

	if resp := d.call(t, "/blog", "203.0.113.1"); resp.Header.Get("X-OxiTraffic") != "counted" {
		t.Fatalf("first call = %q; want counted", resp.Header.Get("X-OxiTraffic"))
	}
	pgCtl(t, cfg, "stop", "-m", "fast")
	if status, _ := get(t, d.url+"/healthz"); status != 503 {
		t.Errorf("GET /healthz with PostgreSQL down = %d; want 503", status)
	}
	outcomes := map[string]int{}
	for i := range 30 {
		resp := d.call(t, "/blog", fmt.Sprintf("198.51.100.%d", i+1))
		if resp.StatusCode != 200 {
			t.Errorf("call during the outage = %d; want 200 and the image", resp.StatusCode)
		}
		outcomes[resp.Header.Get("X-OxiTraffic")]++
	}
	if outcomes["queued"] != 20 || outcomes["dropped"] != 10 {
		t.Errorf("outcomes of 30 calls with queue_size 20 = %v; want 20 queued, 10 dropped", outcomes)
	}
	// A visitor gets the image whatever happens; the call of a path that cannot be stored
	// yet is held until it is.
	if resp := d.call(t, "/about", "198.51.100.1"); resp.StatusCode != 200 || resp.Header.Get("X-OxiTraffic") != "held" {
		t.Errorf("new path during the outage = %d %q; want 200 and held", resp.StatusCode, resp.Header.Get("X-OxiTraffic"))
	}

	pgCtl(t, cfg, "start", "-w")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if status, _ := get(t, d.url+"/healthz"); status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/healthz did not answer 200 within 30s of PostgreSQL's return")
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop(t)
	var rows int
	d.db.QueryRow("SELECT count(*) FROM calls").Scan(&rows)
	if rows != 21 {
		t.Errorf("rows after the outage = %d; want 21 (1 before, 20 queued)", rows)
	}
	logs, _ := os.ReadFile(d.dataDir + "/" + logFileName)
	if !strings.Contains(string(logs), "lost=10") && !strings.Contains(string(logs), "lost_total=10") {
		t.Errorf("log does not report the 10 lost calls:\n%s", logs)
	}
}

// pgCtl runs pg_ctl on the cluster whose socket folder is cfg.Host.
func pgCtl(t *testing.T, cfg DBConfig, args ...string) {
	t.Helper()
	bin, err := pgBinDir()
	if err != nil {
		t.Fatal(err)
	}
	data := cfg.Host + "/data"
	full := append([]string{bin + "/pg_ctl"}, args...)
	full = append(full, "-D", data, "-l", cfg.Host+"/log", "-o",
		fmt.Sprintf("-k %s -c listen_addresses='' -c fsync=off", cfg.Host))
	cmd := exec.Command(full[0], full[1:]...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "nobody", "--"}, full...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl %s: %v\n%s", args[0], err, out)
	}
}

// startOwnCluster runs OxiTraffic, with extra config lines and environment variables, on a
// PostgreSQL cluster of its own that the test may stop and start, with d.db open on it; it
// returns the daemon and the cluster's settings.
func startOwnCluster(t *testing.T, extra string, env map[string]string) (*daemon, DBConfig) {
	t.Helper()
	cfg, stopPG, err := startCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopPG)
	cfg.Database = "postgres"
	cfg.ConnectTimeout = Duration(10 * time.Second)
	db, err := openDB(context.Background(), cfg, startPool, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := newSite(t)
	d := &daemon{dbCfg: cfg, db: db, site: st, dataDir: writeDataDir(t, cfg, st.URL, extra)}
	d.start(t, env)
	return d, cfg
}
