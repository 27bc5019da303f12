package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logFiles are the hand-written logs of testdata/logs, given newest first as a shell's
// glob of rotated logs would not order them.
var logFiles = []string{"testdata/logs/access.log", "testdata/logs/access.log.2.gz", "testdata/logs/access.log.1"}

// importSummary is the summary of importing logFiles into an empty database.
const importSummary = "12 calls added; skipped: 1 unreadable, 1 invalid path, 2 not GET, 2 not 200, 6 not a page, 2 crawler, 1 ignored visitor, 3 duplicate, 0 already imported"

// runImportOf runs oxitraffic -import with the data folder dir and returns stdout and stderr.
func runImportOf(t *testing.T, dir string, files ...string) (string, string, error) {
	t.Helper()
	return runArgs(dir, append([]string{"-import"}, files...)...)
}

// runArgs runs oxitraffic with the data folder dir and returns stdout and stderr.
func runArgs(dir string, args ...string) (string, string, error) {
	var stdout, stderr syncBuffer
	getenv := func(k string) string {
		if k == "OXITRAFFIC_DATA_DIR" {
			return dir
		}
		return ""
	}
	err := run(context.Background(), args, getenv, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// TestImportLogs imports logs of both formats, plain and gzip, in the wrong order, while
// a daemon runs on the database: the calls are the page views of the logs under the rules
// of /call, the rollups equal the rows, the daemon answers the new counts without a
// restart, and a second import adds nothing.
func TestImportLogs(t *testing.T) {
	d := startDaemon(t, "ignore_visitors: [192.0.2.99]\n")
	d.call(t, "/blog", "203.0.113.200") // a live call before the import
	live := make(chan error, 1)
	go func() { live <- liveCalls(d.url+"/call/about", 20) }()

	// access.log named twice is read once.
	out, errOut, err := runImportOf(t, d.dataDir, append(logFiles, "testdata/logs/access.log")...)
	if err != nil {
		t.Fatalf("run(-import) = %v; want nil\n%s", err, errOut)
	}
	if err := <-live; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "imported 30 lines of 3 files") || !strings.Contains(out, importSummary) {
		t.Errorf("run(-import) printed %q; want 30 lines of 3 files and %q", out, importSummary)
	}
	if want := "testdata/logs/access.log:12: unreadable line"; !strings.Contains(errOut, want) {
		t.Errorf("run(-import) stderr = %q; want it to name %q", errOut, want)
	}
	if strings.Contains(errOut, "192.0.2.") || strings.Contains(errOut, "written by something else") {
		t.Errorf("run(-import) stderr = %q; want no address and no line's text", errOut)
	}

	for path, want := range map[string]int{"blog": 6, "blog/post-1": 2, "about": 24, "": 1} {
		if n := d.rows(t, path); n != want {
			t.Errorf("calls of %q after the import = %d; want %d", path, n, want)
		}
		waitFor(t, 10*time.Second, "the daemon's count of "+path, func() bool {
			_, body := get(t, d.url+"/api/count/"+path)
			return body == strconv.Itoa(want)+"\n"
		})
	}
	if _, body := get(t, d.url+"/api/total"); body != "33\n" {
		t.Errorf("/api/total = %q; want 33", body)
	}
	wantDays := map[string]int{"2026-02-20": 1, "2026-02-21": 2, "2026-03-01": 1, "2026-03-02": 1}
	if days := dayBuckets(t, d.url+"/api/history/blog?by=day&from=2026-02-01&to=2026-03-31"); !equalMaps(days, wantDays) {
		t.Errorf("/api/history/blog?by=day = %v; want %v", days, wantDays)
	}
	checkRollupsEqualRows(t, d.db)

	out, errOut, err = runImportOf(t, d.dataDir, logFiles...)
	if err != nil {
		t.Fatalf("second run(-import) = %v; want nil\n%s", err, errOut)
	}
	if want := "0 calls added"; !strings.Contains(out, want) || !strings.Contains(out, "3 duplicate, 12 already imported") {
		t.Errorf("second run(-import) printed %q; want %q and 12 already imported", out, want)
	}
	if n := d.rows(t, "blog"); n != 6 {
		t.Errorf("calls of blog after the second import = %d; want 6", n)
	}
	checkRollupsEqualRows(t, d.db)
	if _, body := get(t, d.url+"/api/total"); body != "33\n" {
		t.Errorf("/api/total after the second import = %q; want 33", body)
	}
}

// TestUnimportRemovesTheImport checks that -unimport removes exactly the calls of one
// import, live calls at the same path kept, that the rollups and a running daemon follow,
// and that the same logs can then be imported again.
func TestUnimportRemovesTheImport(t *testing.T) {
	d := startDaemon(t, "")
	d.call(t, "/blog", "203.0.113.200")
	out, errOut, err := runImportOf(t, d.dataDir, logFiles...)
	if err != nil {
		t.Fatalf("run(-import) = %v; want nil\n%s", err, errOut)
	}
	var run int64
	if _, err := fmt.Sscanf(out, "import %d:", &run); err != nil {
		t.Fatalf("run(-import) printed %q; want it to begin with the import's number", out)
	}
	out, errOut, err = runArgs(d.dataDir, "-unimport", strconv.FormatInt(run, 10))
	if err != nil {
		t.Fatalf("run(-unimport %d) = %v; want nil\n%s", run, err, errOut)
	}
	// Without ignore_visitors, the owner's line counts too: 13 calls.
	if want := fmt.Sprintf("import %d removed: 13 calls", run); !strings.Contains(out, want) {
		t.Errorf("run(-unimport %d) printed %q; want %q", run, out, want)
	}
	for path, want := range map[string]int{"blog": 1, "about": 0} {
		if n := d.rows(t, path); n != want {
			t.Errorf("calls of %q after -unimport = %d; want %d", path, n, want)
		}
	}
	checkRollupsEqualRows(t, d.db)
	if _, _, err := runArgs(d.dataDir, "-unimport", strconv.FormatInt(run, 10)); err == nil || !strings.Contains(err.Error(), "no line of such an import") {
		t.Errorf("second run(-unimport %d) = %v; want an error saying there is no such import", run, err)
	}
	waitFor(t, 10*time.Second, "the daemon's total after -unimport", func() bool {
		_, body := get(t, d.url+"/api/total")
		return body == "1\n"
	})
	out, _, err = runImportOf(t, d.dataDir, logFiles...)
	if err != nil || !strings.Contains(out, "13 calls added") {
		t.Errorf("run(-import) after -unimport = %v, %q; want 13 calls added", err, out)
	}
}

// liveCalls makes n calls of url by n visitors, one after the other, and returns the first
// that was not answered 200.
func liveCalls(url string, n int) error {
	for i := range n {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", desktopUA)
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.18.0.%d", i+1))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s = %d; want 200", url, resp.StatusCode)
		}
	}
	return nil
}

// dayBuckets returns the non-empty buckets of a ?by=day answer by their date.
func dayBuckets(t *testing.T, url string) map[string]int {
	t.Helper()
	var buckets []struct {
		Start string `json:"start"`
		Count int    `json:"count"`
	}
	getJSON(t, url, &buckets)
	days := map[string]int{}
	for _, b := range buckets {
		if b.Count > 0 {
			days[b.Start[:10]] = b.Count
		}
	}
	return days
}

// equalMaps reports whether two maps hold the same pairs.
func equalMaps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkRollupsEqualRows fails the test unless daily_calls, path_counts and site_hourly
// are exactly what the rows of calls add up to at UTC.
func checkRollupsEqualRows(t *testing.T, db *sql.DB) {
	t.Helper()
	for name, pair := range map[string][2]string{
		"daily_calls": {"SELECT path_id, day, count FROM daily_calls",
			"SELECT path_id, (timestamp AT TIME ZONE 'UTC')::date, count(*) FROM calls GROUP BY 1, 2"},
		"path_counts": {"SELECT path_id, count, first_call FROM path_counts",
			"SELECT path_id, count(*), min(timestamp) FROM calls GROUP BY 1"},
		"site_hourly": {"SELECT hour, count FROM site_hourly",
			"SELECT date_trunc('hour', timestamp AT TIME ZONE 'UTC'), count(*) FROM calls GROUP BY 1"},
	} {
		var diff int
		q := fmt.Sprintf("SELECT count(*) FROM ((%[1]s EXCEPT %[2]s) UNION ALL (%[2]s EXCEPT %[1]s)) x", pair[0], pair[1])
		if err := db.QueryRow(q).Scan(&diff); err != nil {
			t.Fatal(err)
		}
		if diff != 0 {
			t.Errorf("%s differs from the rows of calls in %d rows; want 0", name, diff)
		}
	}
}

// TestImportStopsAtAnUnreadableFile checks that a missing file or a corrupt gzip file
// stops the import with the file's name, and that nothing of it is written.
func TestImportStopsAtAnUnreadableFile(t *testing.T) {
	dbCfg, db := newTestDB(t)
	dir := writeDataDir(t, dbCfg, "http://127.0.0.1:1", "")
	gz, err := os.ReadFile("testdata/logs/access.log.2.gz")
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(t.TempDir(), "corrupt.log.gz")
	if err := os.WriteFile(corrupt, gz[:len(gz)-12], 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.log")
	for _, tc := range []struct {
		name  string
		files []string
		bad   string
	}{
		{"missing file", []string{"testdata/logs/access.log", missing}, missing},
		{"corrupt gzip", []string{corrupt}, corrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runImportOf(t, dir, tc.files...)
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("run(-import %v) = %v; want an error naming %s", tc.files, err, tc.bad)
			}
			var n int
			if err := db.QueryRow("SELECT (SELECT count(*) FROM calls) + (SELECT count(*) FROM oxitraffic_imported)").Scan(&n); err != nil && !strings.Contains(err.Error(), "does not exist") {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("rows of calls and imported lines after run(-import %v) = %d; want 0", tc.files, n)
			}
		})
	}
}

// TestImportKeepsGoingOnARepeatedKey imports a log in which a line comes back, from
// another address, long after the others of its second: it gets the key of the first, so
// it is taken as imported already, and the file is imported.
func TestImportKeepsGoingOnARepeatedKey(t *testing.T) {
	dbCfg, db := newTestDB(t)
	dir := writeDataDir(t, dbCfg, "http://127.0.0.1:1", "")
	line := ` - - [02/Mar/2026:10:00:00 +0000] "GET /blog HTTP/1.1" 200 5120 "-" "` + desktopUA + `"` + "\n"
	log := filepath.Join(t.TempDir(), "access.log")
	text := "192.0.2.1" + line +
		`192.0.2.2 - - [02/Mar/2026:10:20:00 +0000] "GET /about HTTP/1.1" 200 3000 "-" "` + desktopUA + `"` + "\n" +
		"192.0.2.3" + line
	if err := os.WriteFile(log, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runImportOf(t, dir, log)
	if err != nil {
		t.Fatalf("run(-import) = %v; want nil\n%s", err, errOut)
	}
	if !strings.Contains(out, "2 calls added") || !strings.Contains(out, "1 already imported") {
		t.Errorf("run(-import) printed %q; want 2 calls added and 1 already imported", out)
	}
	if n := callRows(t, db, "blog"); n != 1 {
		t.Errorf("calls of blog = %d; want 1", n)
	}
}

// TestImportBinaryReadsStandardInput pipes a gzip log into the real binary's -import -
// and checks its calls, and that a missing file exits with status 1 and its name.
func TestImportBinaryReadsStandardInput(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	dbCfg, db := newTestDB(t)
	dir := writeDataDir(t, dbCfg, "http://127.0.0.1:1", "")
	in, err := os.Open("testdata/logs/access.log.2.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command(bin, "-import", "-")
	cmd.Env = append(os.Environ(), "OXITRAFFIC_DATA_DIR="+dir)
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("oxitraffic -import - = %v; want success\n%s", err, out)
	}
	if want := "imported 5 lines of 1 files"; !strings.Contains(string(out), want) || !strings.Contains(string(out), "3 calls added") {
		t.Errorf("oxitraffic -import - printed %q; want %q and 3 calls added", out, want)
	}
	if n := callRows(t, db, "blog"); n != 3 {
		t.Errorf("calls of blog = %d; want 3", n)
	}

	cmd = exec.Command(bin, "-import", "no-such.log")
	cmd.Env = append(os.Environ(), "OXITRAFFIC_DATA_DIR="+dir)
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "no-such.log") {
		t.Errorf("oxitraffic -import no-such.log = %v, %q; want exit status 1 naming the file", err, out)
	}
}

// TestParseLogLine checks the fields read from lines of nginx and Apache.
func TestParseLogLine(t *testing.T) {
	for _, tc := range []struct {
		line, addr, target, ua string
		secs                   int64
		status                 int
		hasUA                  bool
	}{
		{`192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
			"192.0.2.1", "/apache_pb.gif", "", 971211336, 200, false},
		{`2001:db8::1 - bob [01/Jan/2026:00:00:00 +0000] "GET /a%20b?x=1 HTTP/2.0" 404 - "-" "curl/8.5.0"`,
			"2001:db8::1", "/a%20b?x=1", "curl/8.5.0", 1767225600, 404, true},
		{`192.0.2.1 - - [01/Jan/2026:00:00:00 +0100] "GET /\xC3\xBC HTTP/1.1" 200 1 "-" "say \"hi\""`,
			"192.0.2.1", "/\u00fc", `say "hi"`, 1767222000, 200, true},
		{`192.0.2.1 - - [01/Jan/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-" "extra" 0.003`,
			"192.0.2.1", "/x", "", 1767225600, 200, true},
	} {
		l, err := parseLogLine([]byte(tc.line + "\n"))
		if err != nil {
			t.Errorf("parseLogLine(%q) = %v; want no error", tc.line, err)
			continue
		}
		got := fmt.Sprint(string(l.addr), string(l.target), string(l.ua), l.secs, l.status, l.hasUA)
		want := fmt.Sprint(tc.addr, tc.target, tc.ua, tc.secs, tc.status, tc.hasUA)
		if got != want {
			t.Errorf("parseLogLine(%q) = %s; want %s", tc.line, got, want)
		}
	}
	for _, line := range []string{"", "garbage", `192.0.2.1 - - [32/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1`,
		`192.0.2.1 - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1`, `192.0.2.1 - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" OK 1`} {
		if _, err := parseLogLine([]byte(line)); err == nil {
			t.Errorf("parseLogLine(%q) = nil error; want one", line)
		}
	}
}

// TestIsPage checks which paths count as pages.
func TestIsPage(t *testing.T) {
	for path, want := range map[string]bool{
		"": true, "blog": true, "blog/post-1": true, "index.html": true, "v1.2/notes": true,
		"style.css": false, "img/A.PNG": false, "robots.txt": false, "feed": false, "blog/feed": false,
		".well-known/security.txt": false, "fonts/x.woff2": false, "sitemap.xml": false,
	} {
		if got := isPage(path); got != want {
			t.Errorf("isPage(%q) = %v; want %v", path, got, want)
		}
	}
}

// BenchmarkImport imports a generated gzip log of a million lines into a fresh database,
// and reports lines/s and the process's peak resident memory. The log is a blog's year:
// 2,000 pages, a few of them popular, 50,000 visitors; of every 20 lines, 6 are page
// views, 7 the assets they load, 4 crawlers, and one each a 404, a 304 and a POST.
func BenchmarkImport(b *testing.B) {
	const lines = 1_000_000
	log := filepath.Join(b.TempDir(), "access.log.gz")
	writeBenchLog(b, log, lines)
	for b.Loop() {
		b.StopTimer()
		dbCfg, _ := newTestDB(b)
		dir := writeDataDir(b, dbCfg, "http://127.0.0.1:1", "dedup:\n  window: 1h\n")
		getenv := func(k string) string {
			if k == "OXITRAFFIC_DATA_DIR" {
				return dir
			}
			return ""
		}
		b.StartTimer()
		var out syncBuffer
		if err := run(context.Background(), []string{"-import", log}, getenv, &out, &out); err != nil {
			b.Fatalf("run(-import) = %v\n%s", err, out.String())
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "maxRSS-MiB")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapSys)/(1<<20), "heap-MiB")
}

// benchAssets are the assets that a page view loads in the benchmark's log.
var benchAssets = []string{"/css/site.css", "/js/site.js", "/img/logo.png", "/fonts/inter.woff2", "/favicon.ico", "/img/hero.webp", "/feed.xml"}

// benchCrawlers are the crawlers of the benchmark's log.
var benchCrawlers = []string{
	"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
	"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
	"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
	"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
}

// writeBenchLog writes n lines of a combined log, gzip-compressed, in time order.
func writeBenchLog(b *testing.B, name string, n int) {
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	w := bufio.NewWriter(zw)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 365 * 24 * time.Hour / time.Duration(n)
	for i := range n {
		at := start.Add(time.Duration(i) * step).Format("02/Jan/2006:15:04:05 -0700")
		h := uint32(i) * 2654435761
		v := h % 50_000
		x := float64(h>>8) / (1 << 24)
		page := fmt.Sprintf("/blog/post-%d/", int(2000*x*x*x))
		method, target, status, ua := "GET", page+"?utm_source=feed", 200, desktopUA
		switch k := i % 20; {
		case k >= 6 && k < 13:
			target = benchAssets[k-6]
		case k >= 13 && k < 17:
			ua = benchCrawlers[k-13]
		case k == 17:
			target, status = "/wp-login.php", 404
		case k == 18:
			target, status = page, 304
		case k == 19:
			method, target = "POST", "/comments"
		}
		fmt.Fprintf(w, "10.%d.%d.%d - - [%s] \"%s %s HTTP/1.1\" %d %d \"https://www.example.com/\" \"%s\"\n",
			v>>16, v>>8&255, v&255, at, method, target, status, 1000+i%5000, ua)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
}
