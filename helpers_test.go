package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"
)

// testPG is the PostgreSQL that every test of this run uses; each test gets its own database.
var testPG struct {
	once sync.Once
	cfg  DBConfig // without Database
	stop func()
	err  error
	n    atomic.Int64
}

// TestMain runs the tests, then stops the throwaway PostgreSQL cluster and removes the
// built binary, if the tests made them.
func TestMain(m *testing.M) {
	var once sync.Once
	cleanup := func() {
		once.Do(func() {
			if testPG.stop != nil {
				testPG.stop()
			}
			if binDir != "" {
				os.RemoveAll(binDir)
			}
		})
	}
	// Ctrl-C and kill clean up too. Only SIGKILL cannot: the next run removes what it left.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "%v: stopping the throwaway PostgreSQL\n", s)
		cleanup()
		os.Exit(1)
	}()
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// setupPG starts a throwaway PostgreSQL cluster, or uses OXITRAFFIC_TEST_DSN; it runs at
// the first test that needs a database, so that fuzzing workers start none.
func setupPG() {
	if dsn := os.Getenv("OXITRAFFIC_TEST_DSN"); dsn != "" {
		c, err := pq.NewConfig(dsn)
		if err != nil {
			testPG.err = fmt.Errorf("OXITRAFFIC_TEST_DSN: %w", err)
		}
		testPG.cfg = DBConfig{Host: c.Host, Port: int(c.Port), Username: c.User, Password: c.Password, SSLMode: string(c.SSLMode)}
		if testPG.cfg.Port == 0 {
			testPG.cfg.Port = 5432
		}
		if testPG.cfg.SSLMode == "" {
			testPG.cfg.SSLMode = "prefer"
		}
	} else {
		testPG.cfg, testPG.stop, testPG.err = startCluster()
	}
}

// pgBinDir finds the folder of initdb and pg_ctl: on PATH, or Debian's newest.
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			// Debian links them from elsewhere; pg_dump sits beside the real ones.
			if real, err := filepath.EvalSymlinks(p); err == nil {
				p = real
			}
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql; `make test` does it), and OXITRAFFIC_TEST_DSN is not set")
}

// clusterPrefix starts the names of the temp folders of throwaway clusters.
const clusterPrefix = "oxitraffic-test-pg-"

// ownerFile, in a throwaway cluster's folder, holds the PID of the test process that made it.
const ownerFile = "owner.pid"

// startCluster makes a cluster in a temp folder, listening only on a unix socket there,
// and starts it; as root it runs as nobody, since PostgreSQL refuses to run as root.
// It first removes the clusters of test processes that are gone.
func startCluster() (DBConfig, func(), error) {
	bin, err := pgBinDir()
	if err != nil {
		return DBConfig{}, nil, err
	}
	cred, uid, gid, err := clusterUser()
	if err != nil {
		return DBConfig{}, nil, err
	}
	removeStaleClusters(bin, cred)
	dir, err := os.MkdirTemp("", clusterPrefix)
	if err != nil {
		return DBConfig{}, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return DBConfig{}, nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return DBConfig{}, nil, err
	}
	pgRun := func(name string, args ...string) error { return pgCommand(bin, dir, cred, name, args...) }
	data := filepath.Join(dir, "data")
	if err := pgRun("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"); err != nil {
		return DBConfig{}, nil, err
	}
	opts := fmt.Sprintf("-k %s -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=200", dir)
	if err := pgRun("pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts); err != nil {
		os.RemoveAll(dir)
		return DBConfig{}, nil, err
	}
	stop := func() {
		pgRun("pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", data)
		os.RemoveAll(dir)
	}
	return DBConfig{Host: dir, Port: 5432, Username: "postgres", Password: "", SSLMode: "disable"}, stop, nil
}

// clusterUser returns who runs throwaway clusters: as root, nobody (PostgreSQL refuses to
// run as root), with its uid and gid; otherwise nil and -1, -1.
func clusterUser() (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, -1, -1, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root, PostgreSQL needs another user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// pgCommand runs one of PostgreSQL's programs in dir, as cred when it is not nil.
func pgCommand(bin, dir string, cred *syscall.Credential, name string, args ...string) error {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", name, err, out)
	}
	return nil
}

// removeStaleClusters stops and removes the throwaway clusters left by test processes that
// are gone, killed before they could stop their own.
func removeStaleClusters(bin string, cred *syscall.Credential) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterPrefix+"*"))
	for _, dir := range dirs {
		if !staleCluster(dir) {
			continue
		}
		data := filepath.Join(dir, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			pgCommand(bin, dir, cred, "pg_ctl", "stop", "-w", "-t", "30", "-m", "immediate", "-D", data)
		}
		os.RemoveAll(dir)
	}
}

// staleCluster reports whether the test process that made the cluster in dir is gone. A
// folder without an owner file is stale once it is a minute old and its server is not running.
func staleCluster(dir string) bool {
	if b, err := os.ReadFile(filepath.Join(dir, ownerFile)); err == nil {
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && !processAlive(pid)
	}
	fi, err := os.Stat(dir)
	if err != nil || time.Since(fi.ModTime()) < time.Minute {
		return false
	}
	pid, err := serverPID(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	return err == nil && !processAlive(pid)
}

// serverPID returns the PID of the server of the cluster in dir, from its postmaster.pid.
func serverPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
}

// processAlive reports whether a process with this PID runs: it exists and is not a zombie
// (in a container, PID 1 may never reap the servers that pg_ctl left to it).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || !bytes.HasPrefix(stat[i+1:], []byte(" Z"))
}

// execAll runs each statement, and stops the test at the first that fails.
func execAll(t testing.TB, db *sql.DB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// newTestDB creates an empty database for one test and returns its settings and a handle.
func newTestDB(t testing.TB) (DBConfig, *sql.DB) {
	t.Helper()
	cfg, db, err := createTestDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return cfg, db
}

// createTestDB creates an empty database on the test cluster and opens it.
func createTestDB() (DBConfig, *sql.DB, error) {
	testPG.once.Do(setupPG)
	if testPG.err != nil {
		return DBConfig{}, nil, fmt.Errorf("no PostgreSQL for the tests: %w", testPG.err)
	}
	cfg := testPG.cfg
	cfg.Database = "postgres"
	cfg.ConnectTimeout = Duration(10 * time.Second)
	admin, err := openDB(context.Background(), cfg, startPool, discardLog())
	if err != nil {
		return cfg, nil, err
	}
	defer admin.Close()
	cfg.Database = fmt.Sprintf("oxitraffic_test_%d_%d", os.Getpid(), testPG.n.Add(1))
	if _, err := admin.Exec("CREATE DATABASE " + cfg.Database); err != nil {
		return cfg, nil, err
	}
	db, err := openDB(context.Background(), cfg, startPool, discardLog())
	return cfg, db, err
}

// discardLog returns a logger that writes nothing.
func discardLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// site is a fake tracked website that counts the requests it gets.
type site struct {
	*httptest.Server
	requests atomic.Int64
}

// sitePages are the pages the fake tracked website serves with 200.
var sitePages = map[string]bool{"/": true, "/blog": true, "/blog/post-1": true, "/about": true, "/a b": true, "/ünï": true}

// newSite starts a fake tracked website: sitePages answer 200, /moved redirects to /blog,
// /away redirects to another host, /slow answers after a second, the rest 404.
func newSite(t testing.TB) *site {
	s := &site{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		switch {
		case sitePages[r.URL.Path]:
			fmt.Fprintln(w, "<p>page</p>")
		case r.URL.Path == "/moved":
			http.Redirect(w, r, "/blog", http.StatusFound)
		case r.URL.Path == "/away":
			http.Redirect(w, r, "http://example.invalid/blog", http.StatusFound)
		case r.URL.Path == "/slow":
			time.Sleep(time.Second)
			fmt.Fprintln(w, "slow")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// daemon is OxiTraffic started by run in this process.
type daemon struct {
	url     string
	dataDir string
	db      *sql.DB
	dbCfg   DBConfig
	site    *site
	stdout  *syncBuffer
	stderr  *syncBuffer
	cancel  context.CancelFunc
	done    chan error
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testImage is the response image of the tests: a 1x1 transparent GIF.
var testImage = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// writeDataDir makes a data folder with the image and a config.yaml for db and the site,
// with extra lines appended; they must name keys that are not written here.
func writeDataDir(t testing.TB, db DBConfig, siteURL, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`socket_address: "127.0.0.1:0"
response_filename: pixel.gif
tracked_base_url: %q
db:
  host: %q
  port: %d
  username: %q
  password: %q
  database: %q
  sslmode: %s
%s`, siteURL, db.Host, db.Port, db.Username, db.Password, db.Database, db.SSLMode, extra)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pixel.gif"), testImage, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startDaemon runs OxiTraffic on a fresh database and fake site, with extra config lines.
func startDaemon(t testing.TB, extra string) *daemon {
	t.Helper()
	return startDaemonEnv(t, extra, nil)
}

// startDaemonEnv is startDaemon with environment variables.
func startDaemonEnv(t testing.TB, extra string, env map[string]string) *daemon {
	t.Helper()
	dbCfg, db := newTestDB(t)
	st := newSite(t)
	d := &daemon{dbCfg: dbCfg, db: db, site: st, dataDir: writeDataDir(t, dbCfg, st.URL, extra)}
	d.start(t, env)
	return d
}

// concurrently runs f(0) to f(n-1) at once and waits for all of them.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

// start runs the daemon on its data folder; env adds environment variables.
func (d *daemon) start(t testing.TB, env map[string]string) {
	t.Helper()
	getenv := func(k string) string {
		if k == "OXITRAFFIC_DATA_DIR" {
			return d.dataDir
		}
		return env[k]
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan error, 1)
	d.stdout, d.stderr = &syncBuffer{}, &syncBuffer{}
	go func() { d.done <- run(ctx, nil, getenv, d.stdout, d.stderr) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if addr, ok := strings.CutPrefix(strings.TrimSpace(d.stdout.String()), "listening on "); ok {
			d.url = addr
			break
		}
		select {
		case err := <-d.done:
			t.Fatalf("run ended before listening: %v\n%s", err, d.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not listen within 30s:\n%s", d.stderr.String())
		}
	}
	t.Cleanup(func() { d.stop(t) })
}

// stop ends run as SIGTERM would and waits for it; it is safe to call twice.
func (d *daemon) stop(t testing.TB) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("run() = %v; want nil after stop", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of stop")
	}
}

// call requests /call/<path> as the visitor behind the given X-Forwarded-For.
func (d *daemon) call(t testing.TB, path, forwardedFor string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.url+"/call"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", desktopUA)
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// desktopUA is the User-Agent of a desktop browser, so that test calls are not bots.
const desktopUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"

// get requests url and returns the status and body.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// rows returns the number of calls stored for path.
func (d *daemon) rows(t testing.TB, path string) int {
	t.Helper()
	var n int
	err := d.db.QueryRow("SELECT count(*) FROM calls c JOIN paths p ON p.id = c.path_id WHERE p.path = $1", path).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pathRows returns the number of rows in paths.
func (d *daemon) pathRows(t testing.TB) int {
	t.Helper()
	var n int
	if err := d.db.QueryRow("SELECT count(*) FROM paths").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// binDir holds the binary that buildBinary built, removed by TestMain.
var binDir string

// buildBinary builds the oxitraffic binary once per test run and returns its path.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "oxitraffic-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "oxitraffic")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})
