package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
			return
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

// pgDump returns the SQL dump of a test database.
func pgDump(t *testing.T, cfg DBConfig) string {
	t.Helper()
	bin, err := pgBinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "pg_dump"), "-h", cfg.Host, "-p", fmt.Sprint(cfg.Port), "-U", cfg.Username, cfg.Database)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+cfg.Password)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	if !strings.Contains(string(out), "COPY public.calls") {
		t.Fatalf("pg_dump printed no calls table:\n%s", out)
	}
	return string(out)
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
