package main

import (
	"strings"
	"testing"
)

// TestBadge checks the badge's number, headers, that it never counts, and unknown paths.
func TestBadge(t *testing.T) {
	d := startDaemon(t, "")
	d.addCalls(t, "blog", 0)
	execAll(t, d.db, `INSERT INTO calls (path_id, timestamp)
		SELECT id, now() - g * interval '1 minute' FROM paths, generate_series(1, 1234) g WHERE path = 'blog'`)
	d.addCalls(t, "blog", 0)
	d.stop(t)
	d.start(t, nil)
	d.call(t, "/", "203.0.113.1")

	for _, c := range []struct{ url, want string }{{"/badge/blog", "1,234"}, {"/badge/blog/", "1,234"}, {"/badge", "1"}, {"/badge/", "1"}} {
		resp, body := getFull(t, d.url+c.url)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s; want 200", c.url, resp.StatusCode, body)
		}
		for h, want := range map[string]string{"Content-Type": "image/svg+xml", "Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("GET %s: %s = %q; want %q", c.url, h, got, want)
			}
		}
		if !strings.HasPrefix(body, "<svg") || !strings.Contains(body, ">visits</text>") || !strings.Contains(body, ">"+c.want+"</text>") ||
			!strings.Contains(body, `aria-label="visits: `+c.want+`"`) {
			t.Errorf("GET %s = %s; want an SVG with visits and %s", c.url, body, c.want)
		}
	}
	if n := d.rows(t, "blog"); n != 1234 {
		t.Errorf("after the badges, blog has %d calls; want 1234: a badge never counts", n)
	}
	for _, u := range []string{"/badge/nope", "/badge/a/../blog"} {
		if status, _ := get(t, d.url+u); status != 404 && status != 400 {
			t.Errorf("GET %s = %d; want 404 or 400", u, status)
		}
	}
	if status, _ := get(t, d.url+"/badge/nope"); status != 404 {
		t.Errorf("GET /badge/nope = %d; want 404", status)
	}
}

// TestBadgeDrawing checks thousands separators and that the label is escaped.
func TestBadgeDrawing(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q; want %q", n, got, want)
		}
	}
	svg := string(badgeSVG(`<b>&"`, "12"))
	if strings.Contains(svg, "<b>") || !strings.Contains(svg, "&lt;b&gt;&amp;") {
		t.Errorf("badgeSVG with a label of markup = %s; want it escaped", svg)
	}
}

// TestRobots checks that robots.txt keeps crawlers off everything but the images.
func TestRobots(t *testing.T) {
	d := startDaemon(t, "")
	status, body := get(t, d.url+"/robots.txt")
	for _, want := range []string{"User-agent: *\n", "Disallow: /\n", "Allow: /call\n", "Allow: /badge\n"} {
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /robots.txt = %d %q; want 200 with %q", status, body, want)
		}
	}
}

// TestBadgeLabel checks that the badge shows badge_label, escaped.
func TestBadgeLabel(t *testing.T) {
	ts := newTestServer(t, "badge_label: \"Leser & Co\"\n")
	ts.call(t, "/blog", "203.0.113.1")
	if status, body := ts.get(t, "/badge/blog"); status != 200 || !strings.Contains(body, ">Leser &amp; Co</text>") || !strings.Contains(body, ">1</text>") {
		t.Errorf("GET /badge/blog with the label Leser & Co = %d %s; want it escaped beside 1", status, body)
	}
}
