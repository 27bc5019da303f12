package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startDaemonOn runs OxiTraffic on a fresh database, tracking the website at siteURL.
func startDaemonOn(t *testing.T, siteURL, extra string) *daemon {
	t.Helper()
	dbCfg, db := newTestDB(t)
	d := &daemon{dbCfg: dbCfg, db: db, dataDir: writeDataDir(t, dbCfg, siteURL, extra)}
	d.start(t, nil)
	return d
}

// eventually fails the test unless cond holds within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

// TestFloodKeepsRealPagesCounted checks that a flood of invented paths, each from its own
// address, cannot keep a real new page from being counted: its visitors get the image while
// its check waits, it is checked first once the budget refills, its calls are then written,
// and the site is asked no more than the budget allows.
func TestFloodKeepsRealPagesCounted(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "verify:\n  per_minute: 20\n")
	start := time.Now()
	for i := range 60 {
		resp := d.call(t, fmt.Sprintf("/junk-%d", i), fmt.Sprintf("198.51.%d.%d", 100+i/200, i%200+1))
		resp.Body.Close()
	}
	// The budget is spent: the new post's four readers wait for its check, with the image.
	for i := range 4 {
		resp := d.call(t, "/blog/post-1", fmt.Sprintf("203.0.113.%d", i+1))
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || resp.Header.Get("X-OxiTraffic") != "held" {
			t.Errorf("GET /call/blog/post-1 by reader %d during the flood = %d %q %q; want 200 image/gif held",
				i, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-OxiTraffic"))
		}
	}
	if n := d.rows(t, "blog/post-1"); n != 0 {
		t.Fatalf("rows of blog/post-1 before its check = %d; want 0", n)
	}
	// The next check (a token every 3 s) goes to the post, which has the most readers.
	eventually(t, 10*time.Second, "the held calls of blog/post-1 written", func() bool { return d.rows(t, "blog/post-1") == 4 })
	if n, most := d.site.requests.Load(), 20+int64(time.Since(start)/(3*time.Second))+1; n > most {
		t.Errorf("checks on the tracked site = %d; want at most %d (verify.per_minute: 20)", n, most)
	}
	if n := d.pathRows(t); n != 1 {
		t.Errorf("paths rows = %d; want 1 (blog/post-1)", n)
	}
	if got := d.call(t, "/blog/post-1", "203.0.113.1").Header.Get("X-OxiTraffic"); got != "duplicate" {
		t.Errorf("a held reader calling again = %q; want duplicate", got)
	}
	_, metrics := get(t, d.url+"/metrics")
	if !strings.Contains(metrics, `oxitraffic_held_calls_total{result="written"} 4`) {
		t.Errorf("GET /metrics: no held_calls_total written 4 in\n%s", metrics)
	}
}

// catchAllSite starts a website that answers 200 for every path: pages is what each real
// page answers; any other path gets fallback.
func catchAllSite(t *testing.T, pages map[string]string, fallback string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A case-insensitive server with ;jsessionid= and PATH_INFO: /BLOG, /blog;jsessionid=1
		// and /blog/index.php/x all show the page of /blog.
		p := strings.ToLower(r.URL.Path)
		p, _, _ = strings.Cut(p, ";")
		if body, ok := pages[p]; ok {
			fmt.Fprint(w, body)
			return
		}
		if i := strings.Index(p, ".php/"); i >= 0 {
			if body, ok := pages[p[:i+4]]; ok {
				fmt.Fprint(w, body)
				return
			}
		}
		fmt.Fprint(w, fallback)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestCatchAllSite checks that on sites that answer 200 for every path, only their real
// pages are stored: those that show their own counter, or, on a site whose fallback is the
// same page each time, those that differ from it.
func TestCatchAllSite(t *testing.T) {
	t.Parallel()
	page := func(counter string) string {
		return `<html><body><p>A post</p><img src="https://oxitraffic.example.com/call/` + counter + `" alt=""></body></html>`
	}
	for _, c := range []struct {
		name     string
		pages    map[string]string
		fallback string
		real     []string // counted
		invented []string // never stored
	}{{
		name: "pages show their counter, the fallback is an app's shell",
		pages: map[string]string{
			"/":           `<img src='//oxitraffic.example.com/call'>`,
			"/blog":       page("blog"),
			"/blog/post":  page("blog/post"),
			"/index.php":  page("index.php"),
			"/bücher":     page("b%C3%BCcher"),
			"/about/team": `<p>Us</p><IMG alt="" SRC="/call/about/team?x=1&amp;y=2"><iframe src="https://meet.example/call/room"></iframe>`,
		},
		fallback: `<html><div id="app"></div><script src="/app.js"></script></html>`,
		real:     []string{"/blog", "/blog/post/", "/index.php", "/b%C3%BCcher", "/about/team", ""},
		invented: []string{"/wp-login.php", "/BLOG", "/blog;jsessionid=1", "/index.php/anything", "/x/y/z"},
	}, {
		name:     "the fallback is the home page with its counter",
		pages:    map[string]string{"/": page(""), "/blog": page("blog")},
		fallback: page(""),
		real:     []string{"/blog"},
		invented: []string{"/nope", "/Blog"},
	}, {
		name:     "no counter in the pages, the same fallback each time",
		pages:    map[string]string{"/blog": "<p>The blog</p>", "/about": "<p>About me</p>"},
		fallback: "<p>Page not found, but 200</p>",
		real:     []string{"/blog", "/about"},
		invented: []string{"/nope", "/admin"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			site := catchAllSite(t, c.pages, c.fallback)
			d := startDaemonOn(t, site.URL, "")
			for i, p := range append(c.invented, c.real...) {
				resp := d.call(t, p, fmt.Sprintf("203.0.113.%d", i+1))
				resp.Body.Close()
			}
			for _, p := range c.real {
				name, _ := pathAfter(p, "")
				if n := d.rows(t, name); n != 1 {
					t.Errorf("rows of the real page %q = %d; want 1", name, n)
				}
			}
			if n := d.pathRows(t); n != len(c.real) {
				t.Errorf("paths rows = %d; want %d, the real pages only", n, len(c.real))
			}
		})
	}
}

// TestAnswersRevealNothing checks that by default a counted and a duplicate answer are the
// same to the client, and that /metrics answers only this machine.
func TestAnswersRevealNothing(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "outcome_header: false\n")
	first := d.call(t, "/blog", "203.0.113.7")
	second := d.call(t, "/blog", "203.0.113.7")
	if n := d.rows(t, "blog"); n != 1 {
		t.Fatalf("rows after a call and its repeat = %d; want 1", n)
	}
	for _, r := range []*http.Response{first, second} {
		r.Header.Del("Date")
	}
	if fmt.Sprint(first.Header) != fmt.Sprint(second.Header) || first.StatusCode != second.StatusCode {
		t.Errorf("headers of a counted answer = %d %v; of a duplicate = %d %v; want the same",
			first.StatusCode, first.Header, second.StatusCode, second.Header)
	}
	if first.Header.Get("X-OxiTraffic") != "" {
		t.Errorf("X-OxiTraffic without outcome_header = %q; want none", first.Header.Get("X-OxiTraffic"))
	}
	for _, c := range []struct {
		remote, forwarded string
		want              int
	}{
		{"127.0.0.1:4000", "", 200},
		{"[::1]:4000", "", 200},
		{"203.0.113.9:4000", "", 403},
		{"127.0.0.1:4000", "203.0.113.9", 403}, // a reverse proxy on the machine
	} {
		req := newRequest(t, "/metrics")
		req.RemoteAddr = c.remote
		if c.forwarded != "" {
			req.Header.Set("X-Forwarded-For", c.forwarded)
		}
		if got := d.do(req).StatusCode; got != c.want {
			t.Errorf("GET /metrics from %s (X-Forwarded-For %q) = %d; want %d", c.remote, c.forwarded, got, c.want)
		}
	}
}

// TestCacheFollowsTheWindow checks that the image is never cached longer than dedup.window,
// and that an answer that did not count for a passing reason is not cached.
func TestCacheFollowsTheWindow(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ extra, want string }{
		{"", "private, max-age=86400"},
		{"dedup:\n  window: 1h\n", "private, max-age=3600"},
		{"dedup:\n  window: 72h\n", "private, max-age=86400"},
	} {
		d := newTestServer(t, c.extra+"verify:\n  per_visitor_per_minute: 1\n")
		for _, p := range []string{"/blog", "/blog"} { // counted, then duplicate
			if got := d.call(t, p, "203.0.113.1").Header.Get("Cache-Control"); got != c.want {
				t.Errorf("%q: Cache-Control of /call%s = %q; want %q", c.extra, p, got, c.want)
			}
		}
		// The visitor's one check a minute went to /blog: a new path is limited.
		resp := d.call(t, "/about", "203.0.113.1")
		if got := resp.Header.Get("Cache-Control"); got != "no-store" || resp.Header.Get("X-OxiTraffic") != "limited" {
			t.Errorf("%q: a limited call = %q, Cache-Control %q; want limited, no-store", c.extra, resp.Header.Get("X-OxiTraffic"), got)
		}
	}
}

// TestHashesGoneAfterAQuietWindow checks that the dedup hashes go once their window has
// passed, with no call to make them go, and the verifier's per-visitor hashes with their key.
func TestHashesGoneAfterAQuietWindow(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "dedup:\n  window: 1s\n")
	for i := range 5 {
		d.call(t, "/blog", fmt.Sprintf("203.0.113.%d", i+1)).Body.Close()
	}
	entries := func() string {
		_, body := get(t, d.url+"/metrics")
		for line := range strings.SplitSeq(body, "\n") {
			if v, ok := strings.CutPrefix(line, "oxitraffic_dedup_entries "); ok {
				return v
			}
		}
		return "none"
	}
	if got := entries(); got != "5" {
		t.Fatalf("oxitraffic_dedup_entries after 5 visitors = %s; want 5", got)
	}
	eventually(t, 5*time.Second, "dedup entries gone after a quiet window of 1s", func() bool { return entries() == "0" })

	s, clock := newClockedServer(t, "")
	v := s.srv.verify
	v.mu.Lock()
	v.allowVisitor(netip.MustParseAddr("203.0.113.1"), clock.now())
	k0 := v.visitors.k0
	clock.advance(visitorKeyEvery)
	v.allowVisitor(netip.MustParseAddr("203.0.113.2"), clock.now())
	n, k1 := len(v.visitors.buckets), v.visitors.k0
	v.mu.Unlock()
	if n != 1 || k1 == k0 {
		t.Errorf("per-visitor budgets a minute later = %d, key replaced %v; want 1, true", n, k1 != k0)
	}
}

// TestOnlyDefiniteAnswersAreRemembered checks that a 5xx, 429 or 403 of the tracked site
// does not mark a path unknown: the visitor gets the image, the next call asks again, and
// the held call is written with the next one once the site says yes.
func TestOnlyDefiniteAnswersAreRemembered(t *testing.T) {
	t.Parallel()
	for _, status := range []int{502, 503, 429, 403} {
		var fail atomic.Bool
		fail.Store(true)
		site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.Contains(r.URL.Path, "/oxitraffic-check-"):
				http.NotFound(w, r)
			case fail.Load():
				w.WriteHeader(status)
			default:
				fmt.Fprint(w, "<p>post</p>")
			}
		}))
		t.Cleanup(site.Close)
		base, _ := url.Parse(site.URL)
		d := newTestServer(t, "")
		d.srv.verify = newVerifier(base, VerifyConfig{Timeout: Duration(5 * time.Second), PerMinute: 120, PerVisitorPerMinute: 20}, d.srv.store, discardLog())
		d.h = d.srv.routes()

		resp := d.call(t, "/post", "203.0.113.1")
		if resp.StatusCode != 200 || resp.Header.Get("X-OxiTraffic") != "held" {
			t.Errorf("status %d: the first call = %d %q; want 200 held", status, resp.StatusCode, resp.Header.Get("X-OxiTraffic"))
		}
		fail.Store(false)
		if got := d.call(t, "/post", "203.0.113.2").Header.Get("X-OxiTraffic"); got != "counted" {
			t.Errorf("status %d: the next call once the site answers 200 = %q; want counted", status, got)
		}
		eventually(t, 5*time.Second, fmt.Sprintf("status %d: both calls written", status), func() bool { return d.rows(t, "post") == 2 })
	}
}

// TestHostsInPunycode checks that a Referer naming an international host in punycode, as
// browsers send it, is the host written in allowed_referrers.
func TestHostsInPunycode(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "allowed_referrers: [bücher.example]\n")
	for _, c := range []struct{ referer, want string }{
		{"https://xn--bcher-kva.example/post", "counted"},
		{"https://www.XN--BCHER-KVA.example/", "duplicate"},
		{"https://bucher.example/", "other-site"},
	} {
		if got := d.call(t, "/blog", "203.0.113.1", "Referer", c.referer).Header.Get("X-OxiTraffic"); got != c.want {
			t.Errorf("GET /call/blog with Referer %s = %q; want %q", c.referer, got, c.want)
		}
	}
}

// TestNoDowngradingRedirect checks that a check does not follow a redirect from https to
// http: one on the tracked host is followed over https, one off it not at all.
func TestNoDowngradingRedirect(t *testing.T) {
	t.Parallel()
	base, _ := url.Parse("https://blog.example.com")
	client := newCheckClient(base, time.Second)
	from, _ := http.NewRequest("GET", "https://blog.example.com/post", nil)
	for _, c := range []struct{ to, want string }{
		{"https://blog.example.com/post/", "https://blog.example.com/post/"},
		{"http://blog.example.com/post/", "https://blog.example.com/post/"},
		{"http://evil.example/", ""},
		{"https://evil.example/", ""},
	} {
		to, _ := http.NewRequest("GET", c.to, nil)
		got := ""
		if err := client.CheckRedirect(to, []*http.Request{from}); err == nil {
			got = to.URL.String()
		}
		if got != c.want {
			t.Errorf("redirect from %s to %s: followed to %q; want %q", from.URL, c.to, got, c.want)
		}
	}
}

// TestReadSlotsAreShared checks that one client cannot hold every read slot: a second
// client still reads while the first holds all it may.
func TestReadSlotsAreShared(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	st := d.srv.store
	a := withReadClient(context.Background(), netip.MustParseAddr("203.0.113.1"))
	b := withReadClient(context.Background(), netip.MustParseAddr("203.0.113.2"))
	var held []*reader
	for range clientReads {
		r, err := st.read(a)
		if err != nil {
			t.Fatalf("read %d of one client = %v; want nil", len(held), err)
		}
		held = append(held, r)
	}
	if _, err := st.read(a); err != errBusy {
		t.Errorf("read beyond one client's share = %v; want errBusy", err)
	}
	r, err := st.read(b)
	if err != nil {
		t.Fatalf("read of another client while the first holds its share = %v; want nil", err)
	}
	r.close()
	for _, r := range held {
		r.close()
	}
	if r, err := st.read(a); err != nil {
		t.Errorf("read of the first client after it gave its slots back = %v; want nil", err)
	} else {
		r.close()
	}
}
