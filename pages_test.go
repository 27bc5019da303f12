package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// addCalls stores calls of path at the given RFC 3339 times directly, and rebuilds the
// rollups as a start would.
func (d *daemon) addCalls(t *testing.T, path string, offset int, times ...string) {
	t.Helper()
	d.addCallsAt(t, time.FixedZone("", offset), path, times...)
}

// TestHistoryBuckets checks /api/history?by= at +05:30 across a day boundary, with and without a range.
func TestHistoryBuckets(t *testing.T) {
	d := startDaemon(t, "utc_offset:\n  hours: 5\n  minutes: 30\n")
	const offset = 5*3600 + 30*60
	// 23:59:59 on May 1, midnight on May 2 and 17:30 on May 3, at +05:30.
	d.addCalls(t, "blog", offset, "2026-05-01T18:29:59Z", "2026-05-01T18:30:00Z", "2026-05-03T12:00:00Z")
	type b = bucketJSON
	for _, c := range []struct {
		query string
		want  []b
		n     int // when want is nil: the number of buckets, which sum to 3
	}{
		{query: "?by=day", want: []b{{"2026-05-01T00:00:00+05:30", 1}, {"2026-05-02T00:00:00+05:30", 1}, {"2026-05-03T00:00:00+05:30", 1}}},
		{query: "?by=week", want: []b{{"2026-04-27T00:00:00+05:30", 3}}},
		{query: "?by=month", want: []b{{"2026-05-01T00:00:00+05:30", 3}}},
		{query: "?by=hour", n: 43},
		{query: "?by=day&from=2026-05-02", want: []b{{"2026-05-02T00:00:00+05:30", 1}, {"2026-05-03T00:00:00+05:30", 1}}},
		{query: "?by=day&to=2026-05-01", want: []b{{"2026-05-01T00:00:00+05:30", 1}}},
		{query: "?by=day&from=2026-05-01&to=2026-05-05", want: []b{
			{"2026-05-01T00:00:00+05:30", 1}, {"2026-05-02T00:00:00+05:30", 1}, {"2026-05-03T00:00:00+05:30", 1},
			{"2026-05-04T00:00:00+05:30", 0}, {"2026-05-05T00:00:00+05:30", 0}}},
		// Not whole days: counted from calls, not from the daily rollup.
		{query: "?by=day&from=2026-05-02T12:00:00%2B05:30", want: []b{{"2026-05-02T00:00:00+05:30", 0}, {"2026-05-03T00:00:00+05:30", 1}}},
		{query: "?by=hour&from=2026-05-01T23:00:00%2B05:30&to=2026-05-02T01:00:00%2B05:30", want: []b{{"2026-05-01T23:00:00+05:30", 1}, {"2026-05-02T00:00:00+05:30", 1}}},
	} {
		status, body := get(t, d.url+"/api/history/blog"+c.query)
		var got []b
		if err := json.Unmarshal([]byte(body), &got); err != nil || status != 200 {
			t.Errorf("GET /api/history/blog%s = %d %s; want 200 and JSON buckets", c.query, status, body)
			continue
		}
		if c.want != nil {
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(c.want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("GET /api/history/blog%s = %s; want %s", c.query, gotJSON, wantJSON)
			}
			continue
		}
		var sum int64
		for _, x := range got {
			sum += x.Count
		}
		if len(got) != c.n || sum != 3 || got[0].Start != "2026-05-01T23:00:00+05:30" {
			t.Errorf("GET /api/history/blog%s = %d buckets from %v summing to %d; want %d from 2026-05-01T23:00:00+05:30 summing to 3", c.query, len(got), got[0], sum, c.n)
		}
	}
	for _, q := range []string{"?by=year", "?by=day&from=May", "?by=hour&from=1990-01-01", "?by=day&from=2026-05-03&to=2026-05-01"} {
		if status, body := get(t, d.url+"/api/history/blog"+q); status != 400 || body == "" {
			t.Errorf("GET /api/history/blog%s = %d %q; want 400 with a reason", q, status, body)
		}
	}
	if status, _ := get(t, d.url+"/api/history/nope?by=day"); status != 404 {
		t.Errorf("GET /api/history/nope?by=day = %d; want 404", status)
	}
}

// TestDashboard checks the dashboard's list, totals, links and stylesheet.
func TestDashboard(t *testing.T) {
	d := startDaemon(t, "")
	d.call(t, "/blog", "203.0.113.1")
	d.call(t, "/blog", "203.0.113.2")
	d.call(t, "/a%20b", "203.0.113.1")
	d.call(t, "/", "203.0.113.1")

	resp, err := http.Get(d.url + "/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/dashboard/" {
		t.Errorf("GET /dashboard ended at %s; want a redirect to /dashboard/", resp.Request.URL.Path)
	}
	status, body := get(t, d.url+"/dashboard/")
	for _, want := range []string{
		`<strong>4 calls</strong> on <strong>3</strong> pages in all`,
		`<a href="/dashboard/plot/blog">/blog</a></td>`,
		`<td class="num">2</td>`,
		`<a href="/dashboard/plot/a%20b">/a b</a>`,
		`<a href="/dashboard/plot">/</a>`,
		`href="/static/style.css"`,
		`<meta name="description" content="Traffic of 127.0.0.1:`,
		"counted since",
		"Calls of the whole site per hour",
		`<svg class="spark"`,
		`href="/api/counts?format=csv"`,
		`href="/api/total?by=hour&amp;from=`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /dashboard/ = %d, without %q:\n%s", status, want, body)
		}
	}
	if strings.Contains(body, "<script") {
		t.Errorf("the dashboard has a script")
	}
	if strings.Index(body, "/blog</a>") > strings.Index(body, "/a b</a>") {
		t.Errorf("the dashboard does not list the highest count first")
	}
	if status, body := get(t, d.url+"/static/style.css"); status != 200 || !strings.Contains(body, "prefers-color-scheme: dark") {
		t.Errorf("GET /static/style.css = %d; want 200 with a dark mode", status)
	}
	if status, _ := get(t, d.url+"/static/nope.css"); status != 404 {
		t.Errorf("GET /static/nope.css = %d; want 404", status)
	}
}

// TestPlotPage checks the plot page's SVG, choices, empty and unknown paths, and bad parameters.
func TestPlotPage(t *testing.T) {
	d := startDaemon(t, "")
	d.call(t, "/blog", "203.0.113.1")
	d.call(t, "/blog", "203.0.113.2")
	d.addCalls(t, "empty", 0)

	for _, c := range []struct {
		url    string
		status int
		want   []string
	}{
		{"/dashboard/plot/blog", 200, []string{"<svg", `<title id="plot-title">Calls of /blog per day: 2 in all</title>`, "<desc", `class="bar"`, `class="total"`, "2 calls", `href="/dashboard/plot/blog?range=7d"`, `href="/dashboard/plot/blog?range=all&amp;by=hour"`}},
		{"/dashboard/plot/blog?range=7d&by=hour", 200, []string{"Calls of /blog per hour", `aria-current="true">last 7 days`}},
		{"/dashboard/plot/blog?range=1y&by=hour", 200, []string{"shown per day", "Calls of /blog per day"}},
		{"/dashboard/plot/blog?range=30d&by=month", 200, []string{"Calls of /blog per month"}},
		{"/dashboard/plot/empty", 200, []string{"No calls yet"}},
		{"/dashboard/plot/nope", 404, nil},
		{"/dashboard/plot/blog?range=2w", 400, nil},
		{"/dashboard/plot/blog?by=minute", 400, nil},
	} {
		status, body := get(t, d.url+c.url)
		if status != c.status {
			t.Errorf("GET %s = %d; want %d", c.url, status, c.status)
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q in\n%s", c.url, w, body)
			}
		}
	}
}

// TestNiceSteps checks the round tick values of the plot's axes.
func TestNiceSteps(t *testing.T) {
	for _, c := range []struct {
		max       int64
		top, step int64
	}{{0, 1, 1}, {3, 3, 1}, {7, 8, 2}, {12, 15, 5}, {99, 100, 20}, {1234, 1500, 500}, {1_000_000, 1_000_000, 200_000}} {
		if top, step := niceMax(c.max, 5); top != c.top || step != c.step {
			t.Errorf("niceMax(%d, 5) = %d, %d; want %d, %d", c.max, top, step, c.top, c.step)
		}
	}
}

// TestDashboardRanges checks the dashboard's ranges, paging and bounds on 250 pages, whose
// calls another daemon wrote.
func TestDashboardRanges(t *testing.T) {
	d := startDaemon(t, "")
	// Page pN has N calls, an hour ago; old has one call two years ago.
	execAll(t, d.db,
		"INSERT INTO paths (path) SELECT 'p' || g FROM generate_series(1, 250) g",
		`INSERT INTO calls (path_id, timestamp) SELECT p.id, now() - interval '1 hour'
		 FROM paths p, generate_series(1, 250) g WHERE g <= substr(p.path, 2)::int`)
	d.addCalls(t, "old", 0, time.Now().AddDate(-2, 0, 0).Format(time.RFC3339))
	d.stop(t)
	d.start(t, nil)

	rows := func(body string) int { return strings.Count(body, `<td class="num rank">`) }
	status, body := get(t, d.url+"/dashboard/?range=7d")
	for _, want := range []string{
		`<strong>31,375 calls</strong>`, `on <strong>250</strong> pages in the last 7 days; 31,376 calls in all`, `<strong aria-current="true">last 7 days</strong>`,
		`<a href="/dashboard/plot/p250?range=7d">/p250</a>`, `1 of 3`, `href="/dashboard/?page=2&amp;range=7d" rel="next"`,
		`href="/api/counts?format=csv&amp;from=`, `Calls of the whole site per hour`,
	} {
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /dashboard/?range=7d = %d, without %q", status, want)
		}
	}
	if n := rows(body); n != 100 || strings.Contains(body, "/old<") || strings.Contains(body, `rel="prev"`) {
		t.Errorf("GET /dashboard/?range=7d shows %d rows (want 100), old or a previous link", n)
	}
	if n := strings.Count(body, `<svg class="spark"`); n != 100 {
		t.Errorf("GET /dashboard/?range=7d has %d sparklines; want 100", n)
	}
	status, body = get(t, d.url+"/dashboard/?range=7d&page=3")
	if n := rows(body); status != 200 || n != 50 || !strings.Contains(body, ">201</td>") || strings.Contains(body, `rel="next"`) ||
		!strings.Contains(body, `href="/dashboard/?page=2&amp;range=7d" rel="prev"`) {
		t.Errorf("GET /dashboard/?range=7d&page=3 = %d with %d rows; want 50 from rank 201, a previous link and no next", status, n)
	}
	// All: the old page too, and the plot per week over two years.
	status, body = get(t, d.url+"/dashboard/?range=all&page=3")
	if n := rows(body); status != 200 || n != 51 || !strings.Contains(body, "/old<") || !strings.Contains(body, "Calls of the whole site per week") {
		t.Errorf("GET /dashboard/?range=all&page=3 = %d with %d rows; want 51 with old, per week", status, n)
	}
	status, body = get(t, d.url+"/dashboard/?range=30d")
	if status != 200 || !strings.Contains(body, "Calls of the whole site per day") || !strings.Contains(body, "<strong>31,375 calls</strong>") ||
		!strings.Contains(body, "31,376 calls in all") {
		t.Errorf("GET /dashboard/?range=30d = %d; want the site per day, 31,375 calls in it and 31,376 in all:\n%s", status, body)
	}
	for _, q := range []string{"?page=0", "?page=x", "?page=4", "?range=7d&page=4", "?range=2w", "?page=99999999999999999999"} {
		if status, body := get(t, d.url+"/dashboard/"+q); status != 400 || strings.TrimSpace(body) == "" {
			t.Errorf("GET /dashboard/%s = %d %q; want 400 with a reason", q, status, body)
		}
	}
}

// TestDashboardComparesPeriods checks that the dashboard's 7d and 30d show the site's and
// each page's calls beside those of the period before, with the change, and all does not.
func TestDashboardComparesPeriods(t *testing.T) {
	d := startDaemon(t, "")
	ago := func(days int) string { return time.Now().AddDate(0, 0, -days).Format(time.RFC3339) }
	// In the last 7 days: blog 3, about 1; in the 7 days before: blog 2, old 2.
	d.addCalls(t, "blog", 0, ago(0), ago(1), ago(2), ago(8), ago(9))
	d.addCalls(t, "about", 0, ago(1))
	d.addCalls(t, "old", 0, ago(10), ago(11))
	d.stop(t)
	d.start(t, nil)
	status, body := get(t, d.url+"/dashboard/?range=7d")
	for _, want := range []string{
		"<strong>4 calls</strong> on <strong>2</strong> pages in the last 7 days",
		`the 7 days before: 4 calls; <strong class="change">±0%</strong>.`,
		`<th scope="col" class="num">Before</th>`,
		`<td class="num">3</td><td class="num before">2</td><td class="num change">&#43;50%</td>`,
		`<td class="num">1</td><td class="num before">0</td><td class="num change">new</td>`,
		"&amp;compare=previous",
	} {
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /dashboard/?range=7d = %d, without %q:\n%s", status, want, body)
		}
	}
	status, body = get(t, d.url+"/dashboard/?range=30d")
	if status != 200 || !strings.Contains(body, `the 30 days before: 0 calls; <strong class="change">new</strong>.`) {
		t.Errorf("GET /dashboard/?range=30d = %d, without the 30 days before:\n%s", status, body)
	}
	if _, body := get(t, d.url+"/dashboard/"); strings.Contains(body, "before:") || strings.Contains(body, ">Before<") {
		t.Errorf("GET /dashboard/ (all) shows a period before")
	}
}
