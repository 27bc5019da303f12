package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of a path check, each answered in its own way.
var (
	errUnknownPath  = errors.New("the tracked website does not serve this path")
	errTooManyCheck = errors.New("too many checks of new paths; try again later")
	// errPending: the path awaits its check; the call can be held until the check says yes.
	errPending = errors.New("the path awaits its check")
	errOffHost = errors.New("redirect off the tracked website")
)

// negativeTTL is how long a path that the tracked website does not serve is remembered as unknown.
const negativeTTL = 5 * time.Minute

// maxNegative bounds how many unknown paths are remembered.
const maxNegative = 4096

// maxVisitorBuckets bounds how many visitors' check budgets are remembered.
const maxVisitorBuckets = 16384

// visitorKeyEvery is how long one key of the per-visitor budgets lives: a budget refills
// within a minute, so nothing older is needed.
const visitorKeyEvery = time.Minute

// Bounds of the paths that await their check and of the calls held for them.
const (
	maxPending     = 1024             // paths awaiting a check
	maxHeld        = 100_000          // calls held for all of them
	maxHeldPerPath = 10_000           // calls held for one path
	pendingTTL     = time.Hour        // a path not confirmed by then is given up, its calls dropped
	retryFirst     = 10 * time.Second // wait after a failed check before asking again unprompted
	retryMax       = 5 * time.Minute  // the longest wait between such tries
)

// verifier checks a new path against the tracked website before it is stored. Checks are
// bounded: a path the site does not serve is remembered for negativeTTL, concurrent checks
// of one path share one request, and checks are rate-limited overall and per visitor.
//
// A path whose check cannot run now (the overall budget is spent, or the site failed to
// answer) awaits it: its calls are held in memory, bounded, and the budget, as it refills,
// goes to the waiting path with the most distinct visitors first. A yes writes the held
// calls at their times; a no drops them.
type verifier struct {
	base   *url.URL
	client *http.Client
	store  *store
	log    *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	flights  map[string]*flight
	negative map[string]time.Time
	pending  map[string]*pendingPath
	held     int // calls held in pending
	overall  tokenBucket
	visitors visitorBudgets
	perVisit int
	waking   bool                 // a timer will run schedule
	closed   bool                 // no check starts any more
	shapes   map[string]siteShape // by folder

	probeMu sync.Mutex     // one probe of the site's shape at a time
	flying  sync.WaitGroup // the checks that run

	// Counters read by /metrics.
	found, notFound, failed, limited, heldWritten, heldDropped atomic.Int64
}

// flight is one check in progress that concurrent callers of the same path wait for.
type flight struct {
	done chan struct{}
	id   int32
	err  error // nil, errUnknownPath, or errPending when the check failed
}

// pendingPath is a path that awaits its check, with the calls held for it.
type pendingPath struct {
	calls    []int64   // the held calls' times, microseconds since the epoch
	visitors int       // distinct visitors whose calls are held
	nets     []uint64  // keyed hashes of their networks, at most maxNetworks
	since    time.Time // when it was first asked for
	retryAt  time.Time // after a failed check: not asked again unprompted before
	failures int       // failed checks in a row
}

// visitorBudgets are the per-visitor check budgets, by a keyed hash of the visitor whose
// key is replaced, with every budget, every visitorKeyEvery.
type visitorBudgets struct {
	k0, k1  uint64
	start   time.Time
	buckets map[uint64]*tokenBucket
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
		pending:  map[string]*pendingPath{},
		perVisit: cfg.PerVisitorPerMinute,
	}
	v.overall = newTokenBucket(cfg.PerMinute, v.now())
	v.client = newCheckClient(base, time.Duration(cfg.Timeout))
	return v
}

// verifyStats are the verifier's counters that /metrics shows.
type verifyStats struct {
	found, notFound, failed, limited int64
	heldWritten, heldDropped         int64
	held, pending                    int
}

// stats returns the verifier's counters.
func (v *verifier) stats() verifyStats {
	v.mu.Lock()
	held, pending := v.held, len(v.pending)
	v.mu.Unlock()
	return verifyStats{
		v.found.Load(), v.notFound.Load(), v.failed.Load(), v.limited.Load(),
		v.heldWritten.Load(), v.heldDropped.Load(), held, pending,
	}
}

// check returns the id of path: at once when it is known, else after checking it against
// the tracked website and storing it. It returns errUnknownPath when the site does not serve
// the path, errTooManyCheck when the visitor's own budget is spent, and errPending when the
// check has to wait: the caller may then hold the call with hold. The visitor's address is
// used only through a keyed hash, for its check budget.
func (v *verifier) check(ctx context.Context, path string, visitor netip.Addr) (int32, error) {
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
	f := v.flights[path]
	if f == nil {
		switch p := v.pending[path]; {
		case p == nil:
			if !v.allowVisitor(visitor, now) {
				v.mu.Unlock()
				v.limited.Add(1)
				return 0, errTooManyCheck
			}
			v.addPending(path, now)
		case now.Before(p.retryAt) && v.allowVisitor(visitor, now):
			// After a failed check, a visitor's call asks again, within the budgets.
			p.retryAt = time.Time{}
		}
		v.schedule(now)
		if f = v.flights[path]; f == nil {
			v.mu.Unlock()
			return 0, errPending
		}
	}
	v.mu.Unlock()
	select {
	case <-f.done:
		return f.id, f.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// holdResult is what hold did with a call.
type holdResult int

// The results of hold.
const (
	callHeld      holdResult = iota // kept, to be written if the check says yes
	callDuplicate                   // the visitor's call of this path is held or counted already
	callFull                        // dropped: the bounds of held calls are reached
	callKnown                       // the path was stored meanwhile: record the call as any other
)

// hold keeps a call of a path that awaits its check, made at at by visitor, to be written
// if the check says yes. seen marks the visitor's call of the path as counted, reporting
// whether it was already; it is called only once the call can be held, so that a dropped
// call does not mark its visitor. hold returns the path's id with callKnown when the path
// was stored meanwhile, and errUnknownPath when the site said no meanwhile.
func (v *verifier) hold(path string, visitor netip.Addr, at time.Time, seen func() bool) (int32, holdResult, error) {
	if id, ok := v.store.knownPath(path); ok {
		return id, callKnown, nil
	}
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if id, ok := v.store.knownPath(path); ok {
		return id, callKnown, nil
	}
	if until, ok := v.negative[path]; ok && now.Before(until) {
		return 0, 0, errUnknownPath
	}
	p := v.pending[path]
	if p == nil {
		p = v.addPending(path, now)
	}
	if len(p.calls) >= maxHeldPerPath || v.held >= maxHeld {
		v.heldDropped.Add(1)
		return 0, callFull, nil
	}
	if seen() {
		return 0, callDuplicate, nil
	}
	p.visitors++
	p.addNetwork(v.networkHash(visitor))
	p.calls = append(p.calls, at.UnixMicro())
	v.held++
	v.schedule(now)
	return 0, callHeld, nil
}

// maxNetworks bounds the networks counted for a waiting path's place in the queue.
const maxNetworks = 16

// addNetwork counts one more network among those whose visitors asked for the path.
func (p *pendingPath) addNetwork(h uint64) {
	if len(p.nets) < maxNetworks && !slices.Contains(p.nets, h) {
		p.nets = append(p.nets, h)
	}
}

// networkHash returns a keyed hash of the visitor's network, a /24 for IPv4 and a /48 for
// IPv6, under the per-visitor budgets' key: visitors of one network, however many
// addresses it has, weigh as one in the queue of waiting paths. v.mu is held.
func (v *verifier) networkHash(visitor netip.Addr) uint64 {
	bits := 48
	if visitor.Is4() {
		bits = 24
	}
	p, _ := visitor.Prefix(bits)
	return sipHashPair(v.visitors.k0, v.visitors.k1, p.Addr().As16(), "net")
}

// before reports whether p's check goes before q's: more networks, then more visitors,
// then the one that waited longer.
func (p *pendingPath) before(q *pendingPath) bool {
	switch {
	case len(p.nets) != len(q.nets):
		return len(p.nets) > len(q.nets)
	case p.visitors != q.visitors:
		return p.visitors > q.visitors
	}
	return p.since.Before(q.since)
}

// addPending makes path await its check, giving up a waiting path with the fewest
// visitors when maxPending paths wait already; v.mu is held.
func (v *verifier) addPending(path string, now time.Time) *pendingPath {
	if len(v.pending) >= maxPending {
		v.evictPending()
	}
	p := &pendingPath{since: now}
	v.pending[path] = p
	return p
}

// evictPending drops a waiting path, not in flight, that would be checked last, one with a
// single visitor as soon as one is met: the map's order picks it at random, so that a flood
// of new paths cannot push out a path as soon as it came. v.mu is held.
func (v *verifier) evictPending() {
	var worst string
	var wp *pendingPath
	for path, p := range v.pending {
		if v.flights[path] != nil {
			continue
		}
		if wp == nil || wp.before(p) {
			worst, wp = path, p
			if len(p.nets) <= 1 && p.visitors <= 1 {
				break
			}
		}
	}
	if wp != nil {
		v.dropPending(worst, wp)
	}
}

// dropPending forgets a waiting path and drops the calls held for it; v.mu is held.
func (v *verifier) dropPending(path string, p *pendingPath) {
	delete(v.pending, path)
	v.held -= len(p.calls)
	v.heldDropped.Add(int64(len(p.calls)))
}

// schedule starts the checks of waiting paths while the overall budget allows, the path
// with the most visitors first, then the one that waited longest, and arranges to be run
// again when the budget has refilled; v.mu is held.
func (v *verifier) schedule(now time.Time) {
	if v.closed || len(v.pending) == len(v.flights) {
		return
	}
	// When the next check can start: the budget's next token, or the end of a wait after
	// a failed check, whichever is later.
	wake := v.overall.untilNext(now, time.Minute)
	for v.overall.available(now) {
		var best string
		var bp *pendingPath
		retry := time.Duration(-1)
		for path, p := range v.pending {
			switch {
			case v.flights[path] != nil:
				continue
			case p.since.Add(pendingTTL).Before(now):
				v.dropPending(path, p)
				continue
			case now.Before(p.retryAt):
				if d := p.retryAt.Sub(now); retry < 0 || d < retry {
					retry = d
				}
				continue
			}
			if bp == nil || p.before(bp) {
				best, bp = path, p
			}
		}
		if bp == nil {
			wake = max(retry, 10*time.Millisecond)
			break
		}
		v.overall.take()
		f := &flight{done: make(chan struct{})}
		v.flights[best] = f
		v.flying.Add(1)
		go v.fly(best, f)
		wake = v.overall.untilNext(now, time.Minute)
	}
	if len(v.pending) > len(v.flights) && !v.waking {
		// Real time, not v.now: the budget refills with the clock, and a fake clock in
		// tests is moved on by the test, which then calls schedule itself.
		v.waking = true
		time.AfterFunc(min(wake, time.Minute), func() {
			v.mu.Lock()
			defer v.mu.Unlock()
			v.waking = false
			v.schedule(v.now())
		})
	}
}

// close starts no more checks, and waits until ctx ends for those that run, so that the
// calls they confirm are queued before the store closes. The calls held for paths that
// still await their check are lost with the process.
func (v *verifier) close(ctx context.Context) {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	done := make(chan struct{})
	go func() {
		v.flying.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.held > 0 {
		v.log.Warn("stopping: calls of paths that await their check are not written", "calls", v.held, "paths", len(v.pending))
	}
}

// allowVisitor takes one token from the visitor's budget; v.mu is held.
func (v *verifier) allowVisitor(visitor netip.Addr, now time.Time) bool {
	vb := &v.visitors
	if vb.buckets == nil || now.Sub(vb.start) >= visitorKeyEvery || now.Before(vb.start) {
		vb.k0, vb.k1 = randomKey()
		vb.start = now
		vb.buckets = map[uint64]*tokenBucket{}
		// With no call to replace it, the key and the hashes go when their time is up.
		start := now
		time.AfterFunc(visitorKeyEvery, func() {
			v.mu.Lock()
			defer v.mu.Unlock()
			if vb.start.Equal(start) {
				vb.k0, vb.k1, vb.buckets = 0, 0, nil
			}
		})
	}
	h := sipHashPair(vb.k0, vb.k1, visitor.As16(), "")
	b, ok := vb.buckets[h]
	if !ok {
		if len(vb.buckets) >= maxVisitorBuckets {
			for k, b := range vb.buckets {
				if b.full(now) {
					delete(vb.buckets, k)
				}
			}
			if len(vb.buckets) >= maxVisitorBuckets {
				clear(vb.buckets)
			}
		}
		nb := newTokenBucket(v.perVisit, now)
		b = &nb
		vb.buckets[h] = b
	}
	if !b.available(now) {
		return false
	}
	b.take()
	return true
}

// fly runs one check of a waiting path, and stores the path and writes its held calls when
// the tracked website serves it. It does not use a caller's context: callers that give up do
// not cancel the check for the others.
func (v *verifier) fly(path string, f *flight) {
	defer v.flying.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 3*v.client.Timeout+writeTimeout)
	defer cancel()
	err := v.safeFetch(ctx, path)
	switch {
	case err == nil:
		f.id, err = v.store.addPath(ctx, path)
		if err == nil {
			v.found.Add(1)
			v.log.Info("new path", "path", path)
		} else {
			v.failed.Add(1)
			v.log.Warn("cannot store path: its calls are held", "path", path, "err", err)
		}
	case errors.Is(err, errUnknownPath):
		v.notFound.Add(1)
	default:
		v.failed.Add(1)
		v.log.Warn("cannot check path: its calls are held and it is asked again", "path", path, "err", err)
	}
	now := v.now()
	v.mu.Lock()
	delete(v.flights, path)
	p := v.pending[path]
	var calls []int64
	switch {
	case err == nil:
		if p != nil {
			calls = p.calls
			v.held -= len(p.calls)
			delete(v.pending, path)
		}
	case errors.Is(err, errUnknownPath):
		if p != nil {
			v.dropPending(path, p)
		}
		v.rememberUnknown(path, now)
		f.err = errUnknownPath
	default:
		if p == nil {
			p = v.addPending(path, now)
		}
		p.failures++
		p.retryAt = now.Add(min(retryFirst<<min(p.failures-1, 10), retryMax))
		f.err = errPending
	}
	v.schedule(now)
	v.mu.Unlock()
	close(f.done)
	for _, at := range calls {
		if !v.store.reserveCall() {
			v.store.dropCall()
			v.heldDropped.Add(1)
			continue
		}
		v.store.recordCall(f.id, time.UnixMicro(at))
		v.heldWritten.Add(1)
	}
}

// safeFetch is fetch, with a panic on a page that no test foresaw turned into an error of
// the check, so that one page cannot stop the daemon.
func (v *verifier) safeFetch(ctx context.Context, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check %s: %v", path, r)
		}
	}()
	return v.fetch(ctx, path)
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

// take uses one token; call available first, or leave the bucket in debt, which later
// refills pay back.
func (b *tokenBucket) take() {
	b.tokens--
}

// full reports whether the bucket has refilled completely.
func (b *tokenBucket) full(now time.Time) bool {
	b.refill(now)
	return b.tokens >= b.capacity
}

// untilNext returns how long until one token can be taken, at least 10 ms and at most limit.
func (b *tokenBucket) untilNext(now time.Time, limit time.Duration) time.Duration {
	b.refill(now)
	d := time.Duration((1 - b.tokens) / b.capacity * float64(time.Minute))
	return min(max(d, 10*time.Millisecond), limit)
}
