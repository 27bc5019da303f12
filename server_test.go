package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestCallCountsOncePerVisitorAndPage checks that a visitor counts once per page.
func TestCallCountsOncePerVisitorAndPage(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	for _, c := range []struct {
		path, visitor, want string
	}{
		{"/blog", "203.0.113.1", "counted"},
		{"/blog", "203.0.113.1", "duplicate"},
		{"/blog/", "203.0.113.1", "duplicate"},
		{"/blog", "203.0.113.2", "counted"},
		{"/about", "203.0.113.1", "counted"},
	} {
		resp := d.call(t, c.path, c.visitor)
		if resp.StatusCode != 200 || resp.Header.Get("X-OxiTraffic") != c.want {
			t.Errorf("GET /call%s as %s = %d %q; want 200 %q", c.path, c.visitor, resp.StatusCode, resp.Header.Get("X-OxiTraffic"), c.want)
		}
	}
	if n := d.rows(t, "blog"); n != 2 {
		t.Errorf("rows for blog = %d; want 2", n)
	}
	if n := d.rows(t, "about"); n != 1 {
		t.Errorf("rows for about = %d; want 1", n)
	}
}

// TestCallAnswersTheImage checks the image and the headers of a /call answer.
func TestCallAnswersTheImage(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	// Go's own User-Agent is a bot's, which still gets the image.
	req := httptest.NewRequest(http.MethodGet, "/call/blog", nil)
	req.Header.Set("User-Agent", "Go-http-client/1.1")
	resp := d.do(req)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(body, testImage) {
		t.Errorf("GET /call/blog = %d with %d bytes; want 200 with the %d-byte image", resp.StatusCode, len(body), len(testImage))
	}
	for h, want := range map[string]string{
		"Content-Type":  "image/gif",
		"Cache-Control": "private, max-age=86400",
		"X-OxiTraffic":  "bot",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("GET /call/blog: %s = %q; want %q", h, got, want)
		}
	}
}

// TestForwardedForOnlyFromTrustedProxies checks that X-Forwarded-For is believed only from trusted proxies.
func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, config string
		want         int
	}{
		{"loopback trusted by default", "", 2},
		{"loopback not trusted", "trusted_proxies: [\"10.0.0.0/8\"]\n", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := newTestServer(t, c.config)
			d.call(t, "/blog", "198.51.100.1")
			d.call(t, "/blog", "198.51.100.2")
			if n := d.rows(t, "blog"); n != c.want {
				t.Errorf("rows after two X-Forwarded-For visitors = %d; want %d", n, c.want)
			}
		})
	}
}

// TestUnknownPathsAreRefusedAndNotStored checks that paths the tracked site does not serve get 404 and no row.
func TestUnknownPathsAreRefusedAndNotStored(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	for _, p := range []string{"/nope", "/away", "/blog/post-2"} {
		resp := d.call(t, p, "203.0.113.9")
		if resp.StatusCode != 404 || resp.Header.Get("X-OxiTraffic") != "unknown" {
			t.Errorf("GET /call%s = %d %q; want 404 unknown", p, resp.StatusCode, resp.Header.Get("X-OxiTraffic"))
		}
	}
	if n := d.pathRows(t); n != 0 {
		t.Errorf("paths rows = %d; want 0", n)
	}
}

// TestPathNormalisation checks that the forms of one path are stored as one.
func TestPathNormalisation(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	for i, c := range []struct{ request, path string }{
		{"/blog", "blog"},
		{"/blog/", "blog"},
		{"/blog?utm=x", "blog"},
		{"/blog/post-1/", "blog/post-1"},
		{"", ""},
		{"/", ""},
		{"?x=1", ""},
		{"/a%20b", "a b"},
		{"/%C3%BCn%C3%AF", "ünï"},
	} {
		d.call(t, c.request, fmt.Sprintf("192.0.2.%d", i+1))
		status, body := d.get(t, "/api/count/"+c.path)
		if status != 200 {
			t.Errorf("after /call%s: GET /api/count/%s = %d %q; want 200", c.request, c.path, status, body)
		}
	}
	var paths []string
	rows, err := d.db.Query(`SELECT path FROM paths ORDER BY path COLLATE "C"`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p string
		rows.Scan(&p)
		paths = append(paths, p)
	}
	want := []string{"", "a b", "blog", "blog/post-1", "ünï"}
	if fmt.Sprint(paths) != fmt.Sprint(want) {
		t.Errorf("paths rows = %q; want %q", paths, want)
	}
}

// TestInvalidPathsGet400 checks that invalid paths get 400 and are neither checked nor stored.
func TestInvalidPathsGet400(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	for _, p := range []string{
		"/" + strings.Repeat("a", 2049),
		"/%ff",
		"/a%00b",
		"/a%01b",
		"/a%7fb",
		"/%2e%2e/blog",
		"/blog/%2E",
		"/a/../blog",
		"/./blog",
	} {
		resp := d.call(t, p, "203.0.113.3")
		if resp.StatusCode != 400 || resp.Header.Get("X-OxiTraffic") != "invalid" {
			t.Errorf("GET /call%.40s = %d %q; want 400 invalid", p, resp.StatusCode, resp.Header.Get("X-OxiTraffic"))
		}
	}
	if d.site.requests.Load() != 0 {
		t.Errorf("the tracked site got %d requests; want 0 for invalid paths", d.site.requests.Load())
	}
	if n := d.pathRows(t); n != 0 {
		t.Errorf("paths rows = %d; want 0", n)
	}
}

// TestAPI checks /api/counts, /api/count and /api/history, times at +05:30.
func TestAPI(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "utc_offset:\n  hours: 5\n  minutes: 30\n")
	for i := range 3 {
		d.call(t, "/blog", fmt.Sprintf("203.0.113.%d", i+1))
	}
	d.call(t, "/about", "203.0.113.1")
	d.call(t, "/", "203.0.113.1")

	status, body := d.get(t, "/api/counts")
	want := `[{"path":"blog","count":3},{"path":"","count":1},{"path":"about","count":1}]` + "\n"
	if status != 200 || body != want {
		t.Errorf("GET /api/counts = %d %s; want 200 %s", status, body, want)
	}
	for _, c := range []struct {
		url    string
		status int
		body   string
	}{
		{"/api/count/blog", 200, "3\n"},
		{"/api/count/blog/", 200, "3\n"},
		{"/api/count", 200, "1\n"},
		{"/api/count/nope", 404, "unknown path\n"},
		{"/api/history/nope", 404, "unknown path\n"},
		{"/api/history/blog?from=yesterday", 400, ""},
	} {
		status, body := d.get(t, c.url)
		if status != c.status || (c.body != "" && body != c.body) {
			t.Errorf("GET %s = %d %q; want %d %q", c.url, status, body, c.status, c.body)
		}
	}

	// History times are at +05:30.
	if _, err := d.db.Exec("INSERT INTO calls (path_id, timestamp) SELECT id, '2026-05-01T18:29:59Z' FROM paths WHERE path = 'about'"); err != nil {
		t.Fatal(err)
	}
	status, body = d.get(t, "/api/history/about")
	var times []string
	if err := json.Unmarshal([]byte(body), &times); err != nil || status != 200 || len(times) != 2 {
		t.Fatalf("GET /api/history/about = %d %s; want 200 and two times", status, body)
	}
	if times[0] != "2026-05-01T23:59:59+05:30" {
		t.Errorf("first time = %q; want 2026-05-01T23:59:59+05:30", times[0])
	}
	if !strings.HasSuffix(times[1], "+05:30") {
		t.Errorf("second time = %q; want it at +05:30", times[1])
	}
	for _, c := range []struct {
		query string
		n     int
	}{
		{"?from=2026-05-02", 1},
		{"?to=2026-05-01", 1},
		{"?to=2026-05-01T23:59:59%2B05:30", 0},
		{"?from=2026-05-01&to=2026-05-01", 1},
	} {
		_, body := d.get(t, "/api/history/about"+c.query)
		var got []string
		if err := json.Unmarshal([]byte(body), &got); err != nil || len(got) != c.n {
			t.Errorf("GET /api/history/about%s = %s; want %d times", c.query, body, c.n)
		}
	}
}

// TestHealthz checks /healthz while PostgreSQL answers.
func TestHealthz(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	if status, body := d.get(t, "/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q; want 200 \"ok\\n\"", status, body)
	}
}

// metricLine is one sample line of the Prometheus text format.
var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$`)

// parseMetrics checks the Prometheus text exposition format and returns the samples.
func parseMetrics(t *testing.T, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	typed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			parts := strings.Fields(f)
			if len(parts) != 2 || !strings.Contains("counter gauge histogram summary untyped", parts[1]) {
				t.Errorf("TYPE line %q = malformed; want \"# TYPE name\" and counter, gauge, histogram, summary or untyped", line)
			}
			typed[parts[0]] = true
			continue
		}
		m := metricLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("metrics line %q = malformed; want name{labels} value", line)
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_sum"), "_count")
		if !typed[m[1]] && !typed[base] {
			t.Errorf("TYPE line before %s = none; want one", m[1])
		}
		v, _ := strconv.ParseFloat(m[4], 64)
		out[m[1]+m[2]] = v
	}
	return out
}

// TestMetricsMoveWithCalls checks that /metrics is valid exposition text and counts what calls do.
func TestMetricsMoveWithCalls(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	status, body := d.get(t, "/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics = %d; want 200", status)
	}
	before := parseMetrics(t, body)
	d.call(t, "/blog", "203.0.113.1")
	d.call(t, "/blog", "203.0.113.1")
	d.call(t, "/nope", "203.0.113.1")
	d.call(t, "/blog", "203.0.113.1", "User-Agent", "Googlebot")
	_, body = d.get(t, "/metrics")
	after := parseMetrics(t, body)
	for _, c := range []struct {
		name string
		want float64
	}{
		{`oxitraffic_calls_total{outcome="counted"}`, 1},
		{`oxitraffic_calls_total{outcome="duplicate"}`, 1},
		{`oxitraffic_calls_total{outcome="unknown"}`, 1},
		{`oxitraffic_calls_total{outcome="bot"}`, 1},
		{`oxitraffic_verifications_total{result="found"}`, 1},
		{`oxitraffic_verifications_total{result="not_found"}`, 1},
		{`oxitraffic_calls_written_total`, 1},
		{`oxitraffic_dedup_entries`, 1},
		{`oxitraffic_write_batch_size_count`, 1},
		{`oxitraffic_write_seconds_count`, 1},
	} {
		if got := after[c.name] - before[c.name]; got != c.want {
			t.Errorf("%s moved by %v; want %v", c.name, got, c.want)
		}
	}
	if _, ok := after["oxitraffic_queue_length"]; !ok {
		t.Errorf("oxitraffic_queue_length in GET /metrics = none; want one")
	}
}
