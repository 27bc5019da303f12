package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// site is a fake tracked website that counts the requests it gets.
type site struct {
	*httptest.Server
	requests atomic.Int64 // checks of paths
	probes   atomic.Int64 // requests of paths that cannot exist
}

// sitePages are the pages the fake tracked website serves with 200.
var sitePages = map[string]bool{"/": true, "/blog": true, "/blog/post-1": true, "/about": true, "/a b": true, "/ünï": true}

// newSite starts a fake tracked website: sitePages answer 200, /moved redirects to /blog,
// /away redirects to another host, /slow answers after a second, the rest 404. requests
// counts the checks of paths, probes the requests of paths that cannot exist.
func newSite(t testing.TB) *site {
	s := &site{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/oxitraffic-check-") {
			// What the site answers for a path that cannot exist: counted apart from the
			// checks of paths.
			s.probes.Add(1)
			http.NotFound(w, r)
			return
		}
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
// with extra lines appended; they must name keys that are not written here. The answers
// name their outcome in X-OxiTraffic unless extra sets outcome_header itself.
func writeDataDir(t testing.TB, db DBConfig, siteURL, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if !strings.Contains(extra, "outcome_header:") {
		extra = "outcome_header: true\n" + extra
	}
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
	return callRows(t, d.db, path)
}

// pathRows returns the number of rows in paths.
func (d *daemon) pathRows(t testing.TB) int {
	t.Helper()
	return pathRowsOf(t, d.db)
}

// callRows returns the number of calls stored in db for path.
func callRows(t testing.TB, db *sql.DB, path string) int {
	t.Helper()
	var n int
	err := db.QueryRow("SELECT count(*) FROM calls c JOIN paths p ON p.id = c.path_id WHERE p.path = $1", path).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pathRowsOf returns the number of rows in the paths table of db.
func pathRowsOf(t testing.TB, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM paths").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// testServer is what run would serve, on a fresh database and fake site, reached through
// its routes() handler without a listener, a log file or a life cycle.
type testServer struct {
	h    http.Handler
	srv  *server
	db   *sql.DB
	site *site
}

// newTestServer builds the store and the server as run does, from a config.yaml with extra
// lines; the store writes its queue and closes when the test ends.
func newTestServer(t testing.TB, extra string) *testServer {
	t.Helper()
	dbCfg, db := newTestDB(t)
	st := newSite(t)
	cfg, err := loadConfig(writeDataDir(t, dbCfg, st.URL, extra), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := applySchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	store, err := newStore(ctx, db, db, db, cfg.QueueSize, cfg.parsed.loc, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	// Runs before newTestDB's cleanup: the store closes the pool it was given, which the
	// second Close leaves closed.
	t.Cleanup(func() {
		if err := store.close(ctx); err != nil {
			t.Errorf("store.close() = %v; want nil", err)
		}
	})
	srv := newServer(cfg, store, testImage, discardLog())
	return &testServer{h: srv.routes(), srv: srv, db: db, site: st}
}

// newRequest returns a GET of target as a client sends it: escaped where it must be.
func newRequest(t testing.TB, target string) *http.Request {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	return httptest.NewRequest(http.MethodGet, u.RequestURI(), nil)
}

// do serves req and returns the answer.
func (s *testServer) do(req *http.Request) *http.Response {
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec.Result()
}

// call requests /call<path> as the visitor behind the given X-Forwarded-For, from a
// loopback proxy, which is trusted by default; header adds name, value pairs.
func (s *testServer) call(t testing.TB, path, forwardedFor string, header ...string) *http.Response {
	t.Helper()
	req := newRequest(t, "/call"+path)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("User-Agent", desktopUA)
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.do(req)
}

// get requests target from this machine and returns the status and body.
func (s *testServer) get(t testing.TB, target string) (int, string) {
	t.Helper()
	req := newRequest(t, target)
	req.RemoteAddr = "127.0.0.1:40001"
	resp := s.do(req)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// rows returns the number of calls stored for path.
func (s *testServer) rows(t testing.TB, path string) int {
	t.Helper()
	return callRows(t, s.db, path)
}

// pathRows returns the number of rows in paths.
func (s *testServer) pathRows(t testing.TB) int {
	t.Helper()
	return pathRowsOf(t, s.db)
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
