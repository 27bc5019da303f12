package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of a path check, each answered with its own status.
var (
	errUnknownPath  = errors.New("the tracked website does not serve this path")
	errTooManyCheck = errors.New("too many checks of new paths; try again later")
	errOffHost      = errors.New("redirect to another host")
)

// negativeTTL is how long a path that the tracked website does not serve is remembered as unknown.
const negativeTTL = 5 * time.Minute

// maxNegative bounds how many unknown paths are remembered.
const maxNegative = 4096

// maxVisitorBuckets bounds how many visitors' check budgets are remembered.
const maxVisitorBuckets = 16384

// verifier checks a new path against the tracked website before it is stored. Checks are
// bounded: an unknown path is remembered for negativeTTL, concurrent checks of one path
// share one request, and new checks are rate-limited overall and per visitor.
type verifier struct {
	base   *url.URL
	client *http.Client
	store  *store
	log    *slog.Logger
	now    func() time.Time
	k0, k1 uint64 // key of the visitor hashes that index the per-visitor budgets

	mu       sync.Mutex
	flights  map[string]*flight
	negative map[string]time.Time
	overall  tokenBucket
	visitors map[uint64]*tokenBucket
	perVisit int

	// Counters read by /metrics.
	found, notFound, failed, limited atomic.Int64
}

// flight is one check in progress that concurrent callers of the same path wait for.
type flight struct {
	done chan struct{}
	id   int32
	err  error
}

// newVerifier builds a verifier for the tracked site at base.
func newVerifier(base *url.URL, cfg VerifyConfig, s *store, log *slog.Logger) *verifier {
	v := &verifier{
		base:     base,
		store:    s,
		log:      log,
		now:      time.Now,
		flights:  map[string]*flight{},
		negative: map[string]time.Time{},
		visitors: map[uint64]*tokenBucket{},
		perVisit: cfg.PerVisitorPerMinute,
	}
	v.k0, v.k1 = randomKey()
	v.overall = newTokenBucket(cfg.PerMinute, v.now())
	v.client = &http.Client{
		Timeout: time.Duration(cfg.Timeout),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != base.Host {
				return fmt.Errorf("%w (%s)", errOffHost, req.URL.Host)
			}
			if len(via) >= 10 {
				return errors.New("more than 10 redirects")
			}
			return nil
		},
	}
	return v
}

// verifyStats are the verifier's counters that /metrics shows.
type verifyStats struct {
	found, notFound, failed, limited int64
}

// stats returns the verifier's counters.
func (v *verifier) stats() verifyStats {
	return verifyStats{v.found.Load(), v.notFound.Load(), v.failed.Load(), v.limited.Load()}
}

// check returns the id of path: at once when it is known, else after checking it against
// the tracked website and storing it. The visitor's address is used only through a keyed
// hash, for its check budget.
func (v *verifier) check(ctx context.Context, path string, addr netip.Addr) (int32, error) {
	if id, ok := v.store.knownPath(path); ok {
		return id, nil
	}
	now := v.now()
	v.mu.Lock()
	// A check that ended since the first look has stored the path already.
	if id, ok := v.store.knownPath(path); ok {
		v.mu.Unlock()
		return id, nil
	}
	if until, ok := v.negative[path]; ok {
		if now.Before(until) {
			v.mu.Unlock()
			return 0, errUnknownPath
		}
		delete(v.negative, path)
	}
	f, ok := v.flights[path]
	if !ok {
		if !v.allow(sipHashPair(v.k0, v.k1, addr.As16(), ""), now) {
			v.mu.Unlock()
			v.limited.Add(1)
			return 0, errTooManyCheck
		}
		f = &flight{done: make(chan struct{})}
		v.flights[path] = f
		go v.fly(path, f)
	}
	v.mu.Unlock()
	select {
	case <-f.done:
		return f.id, f.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// allow takes one token from the overall budget and one from the visitor's; v.mu is held.
func (v *verifier) allow(visitor uint64, now time.Time) bool {
	b, ok := v.visitors[visitor]
	if !ok {
		if len(v.visitors) >= maxVisitorBuckets {
			v.pruneVisitors(now)
		}
		nb := newTokenBucket(v.perVisit, now)
		b = &nb
		v.visitors[visitor] = b
	}
	if !b.available(now) || !v.overall.available(now) {
		return false
	}
	b.take()
	v.overall.take()
	return true
}

// pruneVisitors forgets visitors whose budget is full again, and all of them if that is not enough.
func (v *verifier) pruneVisitors(now time.Time) {
	for k, b := range v.visitors {
		if b.full(now) {
			delete(v.visitors, k)
		}
	}
	if len(v.visitors) >= maxVisitorBuckets {
		clear(v.visitors)
	}
}

// fly runs one check and stores the path when the tracked website serves it. It does not
// use the caller's context: callers that give up do not cancel the check for the others.
func (v *verifier) fly(path string, f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), v.client.Timeout+writeTimeout)
	defer cancel()
	err := v.fetch(ctx, path)
	switch {
	case err == nil:
		v.found.Add(1)
		f.id, f.err = v.store.addPath(ctx, path)
		if f.err == nil {
			v.log.Info("new path", "path", path)
		}
	case errors.Is(err, errUnknownPath):
		v.notFound.Add(1)
		f.err = errUnknownPath
	default:
		v.failed.Add(1)
		v.log.Warn("cannot check path", "path", path, "err", err)
		f.err = errUnknownPath
	}
	v.mu.Lock()
	delete(v.flights, path)
	if errors.Is(err, errUnknownPath) {
		v.rememberUnknown(path, v.now())
	}
	v.mu.Unlock()
	close(f.done)
}

// rememberUnknown records path as unknown for negativeTTL; v.mu is held.
func (v *verifier) rememberUnknown(path string, now time.Time) {
	if len(v.negative) >= maxNegative {
		for p, until := range v.negative {
			if !now.Before(until) {
				delete(v.negative, p)
			}
		}
		if len(v.negative) >= maxNegative {
			clear(v.negative)
		}
	}
	v.negative[path] = now.Add(negativeTTL)
}

// fetch requests the path from the tracked website: nil for a final 200, errUnknownPath
// for any other status or a redirect off the host, another error when the site cannot be reached.
func (v *verifier) fetch(ctx context.Context, path string) error {
	u := &url.URL{
		Scheme: v.base.Scheme,
		Host:   v.base.Host,
		Path:   strings.TrimSuffix(v.base.Path, "/") + "/" + path,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	req.Header.Set("User-Agent", "OxiTraffic/"+version+" (path check)")
	resp, err := v.client.Do(req)
	if err != nil {
		if errors.Is(err, errOffHost) {
			return fmt.Errorf("%w: %v", errUnknownPath, err)
		}
		return fmt.Errorf("check %s: %w", path, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: status %d", errUnknownPath, resp.StatusCode)
	}
	return nil
}

// tokenBucket allows perMinute events a minute, in bursts of up to perMinute.
type tokenBucket struct {
	capacity float64
	tokens   float64
	last     time.Time
}

// newTokenBucket returns a full bucket.
func newTokenBucket(perMinute int, now time.Time) tokenBucket {
	return tokenBucket{capacity: float64(perMinute), tokens: float64(perMinute), last: now}
}

// refill adds the tokens earned since the last call.
func (b *tokenBucket) refill(now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.capacity, b.tokens+el.Minutes()*b.capacity)
		b.last = now
	}
}

// available reports whether one token can be taken now.
func (b *tokenBucket) available(now time.Time) bool {
	b.refill(now)
	return b.tokens >= 1
}

// take uses one token; call available first.
func (b *tokenBucket) take() {
	b.tokens--
}

// full reports whether the bucket has refilled completely.
func (b *tokenBucket) full(now time.Time) bool {
	b.refill(now)
	return b.tokens >= b.capacity
}
