package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a time that moves only when a test moves it; the verifier reads it as now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// now returns the clock's time.
func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// advance moves the clock on by d.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newClockedServer returns newTestServer's server with its verifier on a fake clock. The
// clock starts after the verifier was built, so its overall budget is full at the start,
// as a bucket that refills for longer than a minute is.
func newClockedServer(t *testing.T, extra string) (*testServer, *fakeClock) {
	t.Helper()
	d := newTestServer(t, extra)
	c := &fakeClock{t: time.Now()}
	d.srv.verify.now = c.now
	return d, c
}

// TestUnknownPathIsRememberedForItsTTL checks that requests of one unknown path, at once and
// after each other, cause one check until negativeTTL has passed, and one more after it.
func TestUnknownPathIsRememberedForItsTTL(t *testing.T) {
	t.Parallel()
	d, clock := newClockedServer(t, "")
	status := func(visitor string) int { return d.call(t, "/no-such-page", visitor).StatusCode }

	statuses := make([]int, 25)
	concurrently(25, func(i int) { statuses[i] = status(fmt.Sprintf("198.51.100.%d", i+1)) })
	for i := range 25 {
		statuses = append(statuses, status(fmt.Sprintf("198.51.100.%d", i+100)))
	}
	for i, s := range statuses {
		if s != 404 {
			t.Errorf("request %d of an unknown path = %d; want 404", i, s)
		}
	}
	if n := d.site.requests.Load(); n != 1 {
		t.Errorf("checks for 50 requests of one unknown path = %d; want 1", n)
	}

	clock.advance(negativeTTL - time.Second)
	if s := status("198.51.100.200"); s != 404 {
		t.Errorf("unknown path a second before negativeTTL ends = %d; want 404", s)
	}
	if n := d.site.requests.Load(); n != 1 {
		t.Errorf("checks a second before negativeTTL ends = %d; want 1", n)
	}

	clock.advance(time.Second)
	if s := status("198.51.100.201"); s != 404 {
		t.Errorf("unknown path once negativeTTL ended = %d; want 404", s)
	}
	if n := d.site.requests.Load(); n != 2 {
		t.Errorf("checks once negativeTTL ended = %d; want 2", n)
	}
}

// TestVisitorCheckBudget checks that verify.per_visitor_per_minute bounds one visitor's
// checks of new paths, refills at its rate, and leaves other visitors their checks.
func TestVisitorCheckBudget(t *testing.T) {
	t.Parallel()
	d, clock := newClockedServer(t, "")
	invent := func(from, n int) map[string]int {
		outcomes := map[string]int{}
		for i := from; i < from+n; i++ {
			resp := d.call(t, fmt.Sprintf("/invented-%d", i), "203.0.113.66")
			outcomes[fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("X-OxiTraffic"))]++
		}
		return outcomes
	}

	// The budget of 20 is spent, and the clock stands: nothing refills it.
	statuses := invent(0, 300)
	if n := d.site.requests.Load(); n != 20 {
		t.Errorf("checks for 300 invented paths from one visitor = %d; want 20 (verify.per_visitor_per_minute)", n)
	}
	// Over its budget, the visitor still gets the image, which is not counted.
	if want := map[string]int{"404 unknown": 20, "200 limited": 280}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Errorf("statuses of 300 invented paths = %v; want %v", statuses, want)
	}

	// Half a minute refills half the budget.
	clock.advance(30 * time.Second)
	statuses = invent(300, 15)
	if n := d.site.requests.Load(); n != 30 {
		t.Errorf("checks after half a minute more = %d; want 30", n)
	}
	if want := map[string]int{"404 unknown": 10, "200 limited": 5}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Errorf("statuses of 15 invented paths half a minute later = %v; want %v", statuses, want)
	}

	// Another visitor still gets its checks, and the server still counts.
	if resp := d.call(t, "/blog", "203.0.113.67"); resp.Header.Get("X-OxiTraffic") != "counted" {
		t.Errorf("a real page after the flood = %d %q; want counted", resp.StatusCode, resp.Header.Get("X-OxiTraffic"))
	}
	if n := d.pathRows(t); n != 1 {
		t.Errorf("paths rows = %d; want 1 (blog)", n)
	}
}

// TestOverallCheckBudget checks that verify.per_minute bounds the checks of all visitors
// together, refills at its rate up to its size, and that the paths beyond it await their
// check with their calls held, answered with the image.
func TestOverallCheckBudget(t *testing.T) {
	t.Parallel()
	d, clock := newClockedServer(t, "verify:\n  per_minute: 5\n")
	outcomes := map[string]int{}
	for i := range 30 {
		resp := d.call(t, fmt.Sprintf("/invented-%d", i), fmt.Sprintf("198.51.100.%d", i+1))
		outcomes[fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("X-OxiTraffic"))]++
	}
	if want := map[string]int{"404 unknown": 5, "200 held": 25}; fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Errorf("30 invented paths from 30 visitors with per_minute 5 = %v; want %v", outcomes, want)
	}
	if n := d.site.requests.Load(); n != 5 {
		t.Errorf("checks of 30 invented paths with per_minute 5 = %d; want 5", n)
	}
	// A fifth of a minute earns one check, of a waiting path.
	clock.advance(12 * time.Second)
	runChecks(t, d.srv.verify)
	if n := d.site.requests.Load(); n != 6 {
		t.Errorf("checks 12s later = %d; want 6", n)
	}
	// Fifty minutes earn no more than the budget's size.
	clock.advance(50 * time.Minute)
	runChecks(t, d.srv.verify)
	if n := d.site.requests.Load(); n != 11 {
		t.Errorf("checks 50 minutes later = %d; want 11", n)
	}
	if s := d.srv.verify.stats(); s.pending != 19 || s.held != 19 || s.heldDropped != 6 {
		t.Errorf("verify.stats() = %d paths waiting, %d calls held, %d dropped; want 19, 19, 6", s.pending, s.held, s.heldDropped)
	}
	if n := d.pathRows(t); n != 0 {
		t.Errorf("paths rows = %d; want 0", n)
	}
}

// runChecks starts the checks that the verifier's budget allows now and waits for them.
func runChecks(t *testing.T, v *verifier) {
	t.Helper()
	v.mu.Lock()
	v.schedule(v.now())
	v.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		v.mu.Lock()
		n := len(v.flights)
		v.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d checks still running after 10s", n)
		}
	}
}

// TestConcurrentFirstCallsCheckOnce checks that 50 first calls of a new path at once cause one check and one row.
func TestConcurrentFirstCallsCheckOnce(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	concurrently(50, func(i int) { d.call(t, "/blog/post-1", fmt.Sprintf("198.51.100.%d", i+1)) })
	if n := d.site.requests.Load(); n != 1 {
		t.Errorf("checks of a new path called 50 times at once = %d; want 1", n)
	}
	if n := d.pathRows(t); n != 1 {
		t.Errorf("paths rows = %d; want 1", n)
	}
	if n := d.rows(t, "blog/post-1"); n != 50 {
		t.Errorf("rows = %d; want 50", n)
	}
}

// TestConcurrentChecksShareOneRequest checks that checks of one new path that overlap wait
// for one request to the tracked website and get the same id.
func TestConcurrentChecksShareOneRequest(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	var requests atomic.Int64
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	gated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/oxitraffic-check-") {
			http.NotFound(w, r)
			return
		}
		if requests.Add(1) == 1 {
			arrived <- struct{}{}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(gated.Close)
	base, _ := url.Parse(gated.URL)
	v := newVerifier(base, VerifyConfig{Timeout: Duration(30 * time.Second), PerMinute: 120, PerVisitorPerMinute: 20}, d.srv.store, discardLog())

	// The site answers only after every check has begun and the first request has arrived.
	const n = 50
	ids, errs := make([]int32, n), make([]error, n)
	var started sync.WaitGroup
	started.Add(n)
	done := make(chan struct{})
	go func() {
		concurrently(n, func(i int) {
			started.Done()
			ids[i], errs[i] = v.check(context.Background(), "gated", netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}))
		})
		close(done)
	}()
	<-arrived
	started.Wait()
	close(release)
	<-done

	if got := requests.Load(); got != 1 {
		t.Errorf("requests to the site for %d overlapping checks of gated = %d; want 1", n, got)
	}
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] || ids[0] == 0 {
			t.Errorf("check %d of gated = %d, %v; want %d (the id of the first), nil", i, ids[i], errs[i], ids[0])
		}
	}
	if s := v.stats(); s.found != 1 {
		t.Errorf("v.stats().found after %d overlapping checks = %d; want 1", n, s.found)
	}
}

// TestChecksFollowRedirectsOnlyWithinTheHost checks that a redirect within the tracked
// website is followed to its page, and one to another host makes the path unknown.
func TestChecksFollowRedirectsOnlyWithinTheHost(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	for _, c := range []struct {
		path    string
		status  int
		outcome string
	}{
		{"/moved", 200, "counted"}, // to /blog on the same host
		{"/away", 404, "unknown"},  // to example.invalid
	} {
		resp := d.call(t, c.path, "203.0.113.9")
		if resp.StatusCode != c.status || resp.Header.Get("X-OxiTraffic") != c.outcome {
			t.Errorf("GET /call%s = %d %q; want %d %q", c.path, resp.StatusCode, resp.Header.Get("X-OxiTraffic"), c.status, c.outcome)
		}
	}
	if n := d.pathRows(t); n != 1 {
		t.Errorf("paths rows = %d; want 1 (moved)", n)
	}
}

// TestUnreachableSiteIsAskedAgain checks that a path the tracked website could not be asked
// about awaits its check and is not remembered as unknown: the next request checks it again.
func TestUnreachableSiteIsAskedAgain(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	base, _ := url.Parse(down.URL)
	v := newVerifier(base, VerifyConfig{Timeout: Duration(5 * time.Second), PerMinute: 120, PerVisitorPerMinute: 20}, d.srv.store, discardLog())
	clock := &fakeClock{t: time.Now()}
	v.now = clock.now
	addr := netip.MustParseAddr("203.0.113.9")
	for i := range 2 {
		if _, err := v.check(context.Background(), "blog", addr); !errors.Is(err, errPending) {
			t.Errorf("check %d of blog on a site that is down = %v; want errPending", i, err)
		}
	}
	if s := v.stats(); s.failed != 2 || s.notFound != 0 {
		t.Errorf("v.stats() after two checks on a site that is down = %d failed, %d not found; want 2, 0", s.failed, s.notFound)
	}
}
