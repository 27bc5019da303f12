package main

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ownerDaemon starts a daemon at +05:30 holding seven calls that another daemon wrote
// straight into calls, over three local days, on paths that a spreadsheet would misread.
func ownerDaemon(t *testing.T) *daemon {
	t.Helper()
	d := startDaemon(t, "utc_offset:\n  hours: 5\n  minutes: 30\n")
	const offset = 5*3600 + 30*60
	// Local times: May 1 23:59:59, May 2 00:00, May 3 17:30.
	d.addCalls(t, "blog", offset, "2026-05-01T18:29:59Z", "2026-05-01T18:30:00Z", "2026-05-03T12:00:00Z")
	// May 2 10:15 and 10:40.
	d.addCalls(t, "about", offset, "2026-05-02T04:45:00Z", "2026-05-02T05:10:00Z")
	// May 2 11:30.
	d.addCalls(t, "=cmd", offset, "2026-05-02T06:00:00Z")
	// May 3 05:30.
	d.addCalls(t, `a,"b`, offset, "2026-05-03T00:00:00Z")
	// The counts in memory are loaded at start.
	d.stop(t)
	d.start(t, nil)
	return d
}

// getFull requests url and returns the answer with its body read.
func getFull(t *testing.T, url string) (*http.Response, string) {
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
	return resp, string(b)
}

// getCSV requests url, checks that it is a CSV download named with prefix, and returns its
// records, the header row first.
func getCSV(t *testing.T, url, namePrefix string) [][]string {
	t.Helper()
	resp, body := getFull(t, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s; want 200", url, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("GET %s: Content-Type = %q; want text/csv; charset=utf-8", url, ct)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename=`+namePrefix) || !strings.HasSuffix(cd, ".csv") {
		t.Errorf("GET %s: Content-Disposition = %q; want an attachment named %s...csv", url, cd, namePrefix)
	}
	if !strings.HasSuffix(body, "\r\n") {
		t.Errorf("GET %s: lines do not end in CRLF as RFC 4180 says: %q", url, body)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("GET %s: %v in\n%s", url, err, body)
	}
	return recs
}

// getJSON requests url and decodes its JSON answer into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	status, body := get(t, url)
	if status != 200 {
		t.Fatalf("GET %s = %d %s; want 200", url, status, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

// TestTotal checks /api/total, its buckets from the hourly rollup with parts of hours
// counted from calls, its CSV, and its bounds.
func TestTotal(t *testing.T) {
	d := ownerDaemon(t)
	for _, c := range []struct{ query, want string }{
		{"", "7\n"},
		{"?from=2026-05-02", "6\n"},
		{"?from=2026-05-02&to=2026-05-02", "4\n"},
		{"?from=2026-05-02T10:30:00%2B05:30", "4\n"},
		{"?from=2026-05-02T10:30:00%2B05:30&to=2026-05-02T11:00:00%2B05:30", "1\n"},
		{"?to=2026-05-01T23:00:00%2B05:30", "0\n"},
	} {
		if status, body := get(t, d.url+"/api/total"+c.query); status != 200 || body != c.want {
			t.Errorf("GET /api/total%s = %d %q; want 200 %q", c.query, status, body, c.want)
		}
	}
	type b = bucketJSON
	for _, c := range []struct {
		query string
		want  []b
	}{
		{"?by=day", []b{{"2026-05-01T00:00:00+05:30", 1}, {"2026-05-02T00:00:00+05:30", 4}, {"2026-05-03T00:00:00+05:30", 2}}},
		{"?by=week", []b{{"2026-04-27T00:00:00+05:30", 7}}},
		{"?by=month&from=2026-04-01", []b{{"2026-04-01T00:00:00+05:30", 0}, {"2026-05-01T00:00:00+05:30", 7}}},
		{"?by=day&from=2026-05-02&to=2026-05-04", []b{{"2026-05-02T00:00:00+05:30", 4}, {"2026-05-03T00:00:00+05:30", 2}, {"2026-05-04T00:00:00+05:30", 0}}},
		// Parts of hours at both ends: 10:40 and 11:30 count, 10:15 does not.
		{"?by=hour&from=2026-05-02T10:30:00%2B05:30&to=2026-05-02T11:45:00%2B05:30", []b{{"2026-05-02T10:00:00+05:30", 1}, {"2026-05-02T11:00:00+05:30", 1}}},
		{"?by=day&from=2026-05-02T10:30:00%2B05:30", []b{{"2026-05-02T00:00:00+05:30", 2}, {"2026-05-03T00:00:00+05:30", 2}}},
	} {
		var got []b
		getJSON(t, d.url+"/api/total"+c.query, &got)
		if !slices.Equal(got, c.want) {
			t.Errorf("GET /api/total%s = %v; want %v", c.query, got, c.want)
		}
		recs := getCSV(t, d.url+"/api/total"+c.query+"&format=csv", "oxitraffic-total-per-")
		if len(recs) != len(got)+1 || !slices.Equal(recs[0], []string{"start", "count"}) {
			t.Errorf("GET /api/total%s&format=csv = %q; want a header start,count and %d rows", c.query, recs, len(got))
			continue
		}
		for i, x := range got {
			if want := []string{x.Start, strconv.FormatInt(x.Count, 10)}; !slices.Equal(recs[i+1], want) {
				t.Errorf("GET /api/total%s&format=csv row %d = %q; want %q as in the JSON", c.query, i+1, recs[i+1], want)
			}
		}
	}
	for _, q := range []string{
		"?by=year", "?by=hour&from=1990-01-01", "?by=day&to=9000-01-01", "?from=May",
		"?from=2026-05-03&to=2026-05-01", "?format=csv", "?by=day&format=xlsx",
	} {
		if status, body := get(t, d.url+"/api/total"+q); status != 400 || strings.TrimSpace(body) == "" {
			t.Errorf("GET /api/total%s = %d %q; want 400 with a reason", q, status, body)
		}
	}

	// A call counted now is in the total at once, and in today's bucket.
	d.call(t, "/blog", "203.0.113.9")
	if status, body := get(t, d.url+"/api/total"); status != 200 || body != "8\n" {
		t.Errorf("after a call, GET /api/total = %d %q; want 8", status, body)
	}
	loc := time.FixedZone("", 5*3600+30*60)
	today := time.Now().In(loc).Format(time.DateOnly)
	var got []b
	getJSON(t, d.url+"/api/total?by=day&from="+today, &got)
	if len(got) != 1 || got[0].Count != 1 || got[0].Start != today+"T00:00:00+05:30" {
		t.Errorf("after a call, GET /api/total?by=day&from=%s = %v; want one bucket of 1", today, got)
	}
}

// TestCountsRange checks /api/counts?from=&to= for whole days and parts of days, against
// its CSV, with paths that hold commas, quotes and a formula.
func TestCountsRange(t *testing.T) {
	d := ownerDaemon(t)
	type c = pathCount
	for _, tc := range []struct {
		query string
		want  []c
	}{
		{"", []c{{"blog", 3}, {"about", 2}, {"=cmd", 1}, {`a,"b`, 1}}},
		{"?from=2026-05-02&to=2026-05-02", []c{{"about", 2}, {"=cmd", 1}, {"blog", 1}}},
		{"?from=2026-05-03", []c{{`a,"b`, 1}, {"blog", 1}}},
		{"?to=2026-05-01", []c{{"blog", 1}}},
		{"?from=2026-05-02T10:30:00%2B05:30", []c{{"=cmd", 1}, {`a,"b`, 1}, {"about", 1}, {"blog", 1}}},
		{"?from=2026-05-02T10:30:00%2B05:30&to=2026-05-02T11:00:00%2B05:30", []c{{"about", 1}}},
		{"?from=2026-05-01T23:00:00%2B05:30&to=2026-05-03T06:00:00%2B05:30", []c{{"about", 2}, {"blog", 2}, {"=cmd", 1}, {`a,"b`, 1}}},
		{"?from=2026-06-01", []c{}},
	} {
		var got []c
		getJSON(t, d.url+"/api/counts"+tc.query, &got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("GET /api/counts%s = %v; want %v", tc.query, got, tc.want)
		}
		sep := "?"
		if tc.query != "" {
			sep = "&"
		}
		recs := getCSV(t, d.url+"/api/counts"+tc.query+sep+"format=csv", "oxitraffic-counts-")
		if len(recs) != len(got)+1 || !slices.Equal(recs[0], []string{"path", "count"}) {
			t.Errorf("GET /api/counts%s&format=csv = %q; want a header path,count and %d rows", tc.query, recs, len(got))
			continue
		}
		for i, x := range got {
			if want := []string{csvSafe(x.Path), strconv.FormatInt(x.Count, 10)}; !slices.Equal(recs[i+1], want) {
				t.Errorf("GET /api/counts%s&format=csv row %d = %q; want %q as in the JSON", tc.query, i+1, recs[i+1], want)
			}
		}
	}
	resp, body := getFull(t, d.url+"/api/counts?from=2026-05-01&to=2026-05-31&format=csv")
	if cd := resp.Header.Get("Content-Disposition"); cd != "attachment; filename=oxitraffic-counts-2026-05-01_2026-05-31.csv" {
		t.Errorf("Content-Disposition = %q; want the range in the file name", cd)
	}
	for _, want := range []string{"path,count\r\n", "'=cmd,1\r\n", `"a,""b",1` + "\r\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /api/counts?...&format=csv = %q; want %q in it", body, want)
		}
	}
	for _, q := range []string{"?from=May", "?from=2026-05-03&to=2026-05-01", "?format=xml", "?to=99999-01-01"} {
		if status, body := get(t, d.url+"/api/counts"+q); status != 400 || strings.TrimSpace(body) == "" {
			t.Errorf("GET /api/counts%s = %d %q; want 400 with a reason", q, status, body)
		}
	}
}

// TestHistoryCSV checks both forms of /api/history as CSV against their JSON.
func TestHistoryCSV(t *testing.T) {
	d := ownerDaemon(t)
	var times []string
	getJSON(t, d.url+"/api/history/blog", &times)
	recs := getCSV(t, d.url+"/api/history/blog?format=csv", "oxitraffic-history-blog-start_")
	if len(recs) != 4 || recs[0][0] != "time" {
		t.Fatalf("GET /api/history/blog?format=csv = %q; want a header time and 3 rows", recs)
	}
	for i, ts := range times {
		if len(recs[i+1]) != 1 || recs[i+1][0] != ts {
			t.Errorf("GET /api/history/blog?format=csv row %d = %q; want %q as in the JSON", i+1, recs[i+1], ts)
		}
	}
	var buckets []bucketJSON
	getJSON(t, d.url+"/api/history/blog?by=day&from=2026-05-01&to=2026-05-03", &buckets)
	recs = getCSV(t, d.url+"/api/history/blog?by=day&from=2026-05-01&to=2026-05-03&format=csv", "oxitraffic-history-blog-per-day-2026-05-01_2026-05-03")
	if len(recs) != len(buckets)+1 || !slices.Equal(recs[0], []string{"start", "count"}) {
		t.Fatalf("GET /api/history/blog?by=day&format=csv = %q; want a header start,count and %d rows", recs, len(buckets))
	}
	for i, x := range buckets {
		if want := []string{x.Start, strconv.FormatInt(x.Count, 10)}; !slices.Equal(recs[i+1], want) {
			t.Errorf("row %d = %q; want %q as in the JSON", i+1, recs[i+1], want)
		}
	}
	// The index page and a formula path get file names of their own.
	getCSV(t, d.url+"/api/history/=cmd?format=csv", "oxitraffic-history-cmd-")
	if status, _ := get(t, d.url+"/api/history/blog?format=pdf"); status != 400 {
		t.Errorf("GET /api/history/blog?format=pdf = %d; want 400", status)
	}
}

// TestCSVCells checks the cells that a spreadsheet would take for formulas, and file names.
func TestCSVCells(t *testing.T) {
	for in, want := range map[string]string{
		"blog": "blog", "=HYPERLINK(1)": "'=HYPERLINK(1)", "+1": "'+1", "-2": "'-2", "@SUM": "'@SUM",
		"\tx": "'\tx", "a=b": "a=b", "": "",
	} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q; want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"": "index", "blog/post-1": "blog_post-1", "=cmd": "cmd", "ünï": "n", "%%%": "page"} {
		if got := fileSafe(in); got != want {
			t.Errorf("fileSafe(%q) = %q; want %q", in, got, want)
		}
	}
}
