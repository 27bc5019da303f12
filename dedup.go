package main

import (
	"net/netip"
	"sync"
	"time"
)

// dedupSet remembers which (visitor, path) pairs were counted, as 64-bit SipHash values
// under a random key that lives only in this process's memory.
//
// Pairs live in two generations, each with its own key. With a window, the current
// generation becomes the previous one after one window; a timer, which runs while any
// hash is remembered, drops the previous generation's hashes as their window ends and
// the generation itself (key and all) once it is empty, so that with or without calls no
// hash outlives its window by more than sweepEvery. A pair counts again once the window has
// passed since it was counted. Memory is bounded: a generation holds at most half of
// maxEntries; when the current one is full it replaces the previous one early.
type dedupSet struct {
	mu        sync.Mutex
	window    time.Duration
	genCap    int
	cur, prev *generation
	sweeping  bool // the timer of sweep is armed
}

// generation is one key and the open-addressing table of hashes made with it.
type generation struct {
	k0, k1 uint64
	start  time.Time
	slots  []uint64 // 0 marks an empty slot, gone a dropped hash; hashes of 0 and 1 are stored as 2
	secs   []uint32 // seconds from start to when the pair was counted; nil without a window
	n      int
}

// newDedupSet makes an empty set; window 0 remembers pairs until restart or until full.
func newDedupSet(window time.Duration, maxEntries int, now time.Time) *dedupSet {
	d := &dedupSet{window: window, genCap: max(maxEntries/2, 1)}
	d.cur = d.newGeneration(now)
	return d
}

// minSlots is the size of a new generation's table.
const minSlots = 1024

// newGeneration makes an empty generation with a fresh random key.
func (d *dedupSet) newGeneration(now time.Time) *generation {
	k0, k1 := randomKey()
	g := &generation{
		k0:    k0,
		k1:    k1,
		start: now,
		slots: make([]uint64, minSlots),
	}
	if d.window > 0 {
		g.secs = make([]uint32, minSlots)
	}
	return g
}

// seen reports whether the pair was already counted within the window, and remembers it
// as counted now when it was not.
func (d *dedupSet) seen(visitor netip.Addr, path string, now time.Time) bool {
	a := visitor.As16()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.window > 0 && now.Sub(d.cur.start) >= d.window {
		d.rotate(now)
		if now.Sub(d.cur.start) >= d.window {
			// Idle for more than two windows: nothing remembered is still current.
			d.rotate(now)
		}
	}
	if _, ok := d.cur.lookup(d.cur.hash(a, path)); ok {
		return true
	}
	if d.prev != nil {
		if secs, ok := d.prev.lookup(d.prev.hash(a, path)); ok {
			if d.window == 0 {
				// Still in use: keep it when the previous generation is dropped.
				d.insert(a, path, now)
				return true
			}
			if now.Sub(d.prev.start.Add(time.Duration(secs)*time.Second)) < d.window {
				return true
			}
		}
	}
	d.insert(a, path, now)
	if d.window > 0 && !d.sweeping {
		d.sweeping = true
		time.AfterFunc(d.sweepEvery(), d.sweep)
	}
	return false
}

// sweepEvery is how often the timer drops the hashes whose window has ended: a sixteenth of
// the window, between 100 ms and a minute.
func (d *dedupSet) sweepEvery() time.Duration {
	return min(max(d.window/16, 100*time.Millisecond), time.Minute)
}

// sweep expires what is due now and runs again while any hash is remembered.
func (d *dedupSet) sweep() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(time.Now())
	if d.cur.n == 0 && d.prev == nil {
		d.sweeping = false
		return
	}
	time.AfterFunc(d.sweepEvery(), d.sweep)
}

// expire rotates the current generation once its window has passed, and drops the previous
// generation's hashes whose window has ended, and the generation when none is left; d.mu
// is held.
func (d *dedupSet) expire(now time.Time) {
	if d.window == 0 {
		return
	}
	if now.Sub(d.cur.start) >= d.window {
		d.rotate(now)
	}
	if d.prev == nil {
		return
	}
	// A hash counted secs after the generation's start is still current before this.
	limit := now.Add(-d.window).Sub(d.prev.start)
	if limit < 0 {
		return
	}
	if d.prev.prune(uint32(min(limit/time.Second, 1<<32-1))); d.prev.n == 0 {
		d.prev = nil
	}
}

// contains reports whether the pair was counted within the window, without remembering it.
func (d *dedupSet) contains(visitor netip.Addr, path string, now time.Time) bool {
	a := visitor.As16()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, g := range []*generation{d.cur, d.prev} {
		if g == nil {
			continue
		}
		secs, ok := g.lookup(g.hash(a, path))
		if ok && (d.window == 0 || now.Sub(g.start.Add(time.Duration(secs)*time.Second)) < d.window) {
			return true
		}
	}
	return false
}

// insert adds the pair to the current generation, starting a new one when it is full.
func (d *dedupSet) insert(a [16]byte, path string, now time.Time) {
	if d.cur.n >= d.genCap {
		d.rotate(now)
	}
	// A request's now may be older than the generation, which a sweep began meanwhile.
	d.cur.insert(d.cur.hash(a, path), uint32(max(now.Sub(d.cur.start), 0)/time.Second))
}

// rotate makes the current generation the previous one and drops the previous one with its key.
func (d *dedupSet) rotate(now time.Time) {
	d.prev = d.cur
	d.cur = d.newGeneration(now)
}

// len returns how many pairs are remembered.
func (d *dedupSet) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.cur.n
	if d.prev != nil {
		n += d.prev.n
	}
	return n
}

// gone marks a slot whose hash was dropped: lookups go on past it, inserts never reuse it
// (only the previous generation, which takes no insert, drops hashes).
const gone = 1

// prune drops, in place, the hashes counted fewer than secs seconds after the
// generation's start, leaving gone in their slots.
func (g *generation) prune(secs uint32) {
	for i, h := range g.slots {
		if h > gone && g.secs[i] < secs {
			g.slots[i], g.secs[i] = gone, 0
			g.n--
		}
	}
}

// hash is SipHash-2-4 of the pair under the generation's key, never 0 (empty) or gone.
func (g *generation) hash(a [16]byte, path string) uint64 {
	if h := sipHashPair(g.k0, g.k1, a, path); h > gone {
		return h
	}
	return gone + 1
}

// lookup finds h and returns the seconds stored with it.
func (g *generation) lookup(h uint64) (uint32, bool) {
	mask := uint64(len(g.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch g.slots[i] {
		case 0:
			return 0, false
		case h:
			if g.secs == nil {
				return 0, true
			}
			return g.secs[i], true
		}
	}
}

// insert stores h, which must not be present, growing the table at three quarters full.
func (g *generation) insert(h uint64, secs uint32) {
	if (g.n+1)*4 > len(g.slots)*3 {
		g.grow()
	}
	mask := uint64(len(g.slots) - 1)
	i := h & mask
	for g.slots[i] != 0 {
		i = (i + 1) & mask
	}
	g.slots[i] = h
	if g.secs != nil {
		g.secs[i] = secs
	}
	g.n++
}

// grow doubles the table and re-inserts every hash.
func (g *generation) grow() {
	old, oldSecs := g.slots, g.secs
	g.slots = make([]uint64, 2*len(old))
	if oldSecs != nil {
		g.secs = make([]uint32, 2*len(old))
	}
	g.n = 0
	for i, h := range old {
		if h <= gone {
			continue
		}
		var s uint32
		if oldSecs != nil {
			s = oldSecs[i]
		}
		g.insert(h, s)
	}
}
