package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNotifySocketGetsReadyAndStopping checks the sd_notify datagrams: READY, WATCHDOG, STOPPING.
func TestNotifySocketGetsReadyAndStopping(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := startDaemonEnv(t, "", map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "200000"})
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("reading the notify socket: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification = %q; want READY=1", got)
	}
	if got := read(); got != "WATCHDOG=1" {
		t.Errorf("notification within a watchdog period = %q; want WATCHDOG=1", got)
	}
	d.stop(t)
	for {
		got := read()
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("notification at stop = %q; want STOPPING=1", got)
		}
	}
}

// TestMetricsOnTheirOwnAddress checks that metrics_address moves /metrics off the main listener.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	d := startDaemon(t, "metrics_address: \"127.0.0.1:0\"\n")
	if status, _ := get(t, d.url+"/metrics"); status != 404 {
		t.Errorf("GET /metrics on the main listener with metrics_address set = %d; want 404", status)
	}
	logs, _ := os.ReadFile(filepath.Join(d.dataDir, logFileName))
	m := regexp.MustCompile(`msg=metrics address=(\S+)`).FindSubmatch(logs)
	if m == nil {
		t.Fatalf("log line msg=metrics = none; want one with the metrics address:\n%s", logs)
	}
	if status, body := get(t, string(m[1])); status != 200 || !strings.Contains(body, "oxitraffic_calls_total") {
		t.Errorf("GET %s = %d; want 200 with the metrics", m[1], status)
	}
}

// TestSIGHUPReopensTheLogFile checks that SIGHUP starts a new log file after logrotate moved the old one.
func TestSIGHUPReopensTheLogFile(t *testing.T) {
	dbCfg, _ := newTestDB(t)
	st := newSite(t)
	dir := writeDataDir(t, dbCfg, st.URL, "")
	p := startProcess(t, dir)
	logPath := filepath.Join(dir, logFileName)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(logPath)
		if err == nil && strings.Contains(string(b), "log file reopened") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new %s 10s after SIGHUP = no line \"log file reopened\" (%v); want one", logFileName, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	old, _ := os.ReadFile(logPath + ".1")
	if !strings.Contains(string(old), "msg=listening") {
		t.Errorf("rotated %s.1 = %q; want the lines before SIGHUP, msg=listening among them", logFileName, old)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM = %v; want 0", err)
	}
}

// TestCheckAndVersionFlags checks -version and -check with good and bad settings.
func TestCheckAndVersionFlags(t *testing.T) {
	dbCfg, _ := newTestDB(t)
	good := writeDataDir(t, dbCfg, "http://127.0.0.1:1", "")
	badDB := dbCfg
	badDB.Database = "no_such_database"
	bad := writeDataDir(t, badDB, "http://127.0.0.1:1", "")
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dir, arg string
		code           int
		out            string
	}{
		{"version", good, "-version", 0, "oxitraffic " + version},
		{"good config", good, "-check", 0, "configuration ok"},
		{"missing database", bad, "-check", 1, `PostgreSQL refused the connection (database no_such_database on`},
		{"bad config", t.TempDir(), "-check", 1, "config.yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, c.arg)
			cmd.Env = append(os.Environ(), "OXITRAFFIC_DATA_DIR="+c.dir)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(string(out), c.out) {
				t.Errorf("oxitraffic %s = exit %d, %q; want exit %d and %q", c.arg, code, out, c.code, c.out)
			}
		})
	}
	// -check does not listen or write a log.
	if _, err := os.Stat(filepath.Join(good, logFileName)); err == nil {
		t.Errorf("os.Stat(%s) after -check = nil; want an error: -check writes no log", logFileName)
	}
}

// TestSystemdUnit checks the unit with systemd-analyze verify and its security score, where systemd-analyze is installed.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: systemd): the unit cannot be checked")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile("oxitraffic.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart exists: point it at the binary just built.
	path := filepath.Join(t.TempDir(), "oxitraffic.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/oxitraffic", bin)), 0o644)
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify = %v, %q; want nil and no output", err, out)
	}
	out, err := exec.Command(analyze, "security", "--offline=true", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security = no exposure level; want one:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	if score > 2.0 {
		t.Errorf("exposure level = %s %s; want at most 2.0", m[1], m[2])
	}
	readme, _ := os.ReadFile("README.md")
	if want := fmt.Sprintf("exposure %s %s", m[1], m[2]); !strings.Contains(string(readme), want) {
		t.Errorf("README does not quote the score %q", want)
	}
}

// TestRestartKeepsCounts checks that counts survive a restart and the dedup set does not.
func TestRestartKeepsCounts(t *testing.T) {
	d := startDaemon(t, "")
	d.call(t, "/blog", "203.0.113.1")
	d.call(t, "/blog", "203.0.113.2")
	d.stop(t)
	d.start(t, nil)
	if status, body := get(t, d.url+"/api/count/blog"); status != 200 || body != "2\n" {
		t.Errorf("after restart GET /api/count/blog = %d %q; want 200 \"2\\n\"", status, body)
	}
	// The dedup set lives in memory only: after a restart a pair counts again.
	if resp := d.call(t, "/blog", "203.0.113.1"); resp.Header.Get("X-OxiTraffic") != "counted" {
		t.Errorf("after restart a known visitor's call = %q; want counted", resp.Header.Get("X-OxiTraffic"))
	}
}

// TestShutdownWritesQueuedCalls checks that a stop right after a burst keeps every acknowledged call.
func TestShutdownWritesQueuedCalls(t *testing.T) {
	d := startDaemon(t, "")
	concurrently(200, func(i int) { d.call(t, "/blog", fmt.Sprintf("10.1.%d.%d", i/250, i%250)) })
	d.stop(t)
	if n := d.rows(t, "blog"); n != 200 {
		t.Errorf("rows after 200 acknowledged calls and a stop = %d; want 200", n)
	}
}
