package main

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestDedupUntilRestart checks that without a window a pair counts once.
func TestDedupUntilRestart(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	d := newDedupSet(0, 1000, now)
	a, b := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	for _, c := range []struct {
		v    netip.Addr
		path string
		want bool
	}{
		{a, "blog", false}, {a, "blog", true}, {b, "blog", false}, {a, "about", false}, {a, "", false}, {a, "", true},
	} {
		if got := d.seen(c.v, c.path, now.Add(1000*time.Hour)); got != c.want {
			t.Errorf("seen(%s, %q) = %v; want %v", c.v, c.path, got, c.want)
		}
	}
}

// TestDedupWindow checks that with a window a pair counts again once the window has passed.
func TestDedupWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	d := newDedupSet(time.Hour, 1000, t0)
	a := netip.MustParseAddr("2001:db8::1")
	for _, c := range []struct {
		after time.Duration
		want  bool
	}{
		{0, false},
		{30 * time.Minute, true},
		{59 * time.Minute, true},
		{61 * time.Minute, false}, // counted again: now remembered from 61m
		{90 * time.Minute, true},
		{120 * time.Minute, true},
		{122 * time.Minute, false},
		{10 * time.Hour, false}, // long idle: everything forgotten
	} {
		if got := d.seen(a, "blog", t0.Add(c.after)); got != c.want {
			t.Errorf("seen after %s = %v; want %v", c.after, got, c.want)
		}
	}
}

// TestDedupKeyRotatesWithWindow checks that a hash key is dropped after two windows.
func TestDedupKeyRotatesWithWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	d := newDedupSet(time.Hour, 1000, t0)
	first := [2]uint64{d.cur.k0, d.cur.k1}
	d.seen(netip.MustParseAddr("203.0.113.1"), "blog", t0.Add(90*time.Minute))
	if d.prev == nil || [2]uint64{d.prev.k0, d.prev.k1} != first || [2]uint64{d.cur.k0, d.cur.k1} == first {
		t.Fatalf("after one window the first key should be the previous one and a new key current")
	}
	d.seen(netip.MustParseAddr("203.0.113.1"), "blog", t0.Add(150*time.Minute))
	for _, g := range []*generation{d.cur, d.prev} {
		if [2]uint64{g.k0, g.k1} == first {
			t.Errorf("after two windows the first key is still kept")
		}
	}
}

// TestDedupMemoryIsBounded checks that dedup.max_entries bounds the remembered pairs.
func TestDedupMemoryIsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	d := newDedupSet(0, 1000, now)
	for i := range 100_000 {
		d.seen(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "blog", now)
	}
	if n := d.len(); n > 1000 {
		t.Errorf("remembered pairs after 100000 visitors = %d; want at most max_entries 1000", n)
	}
	// The most recent visitors are still remembered.
	if !d.seen(netip.AddrFrom4([4]byte{10, 1, 134, 159}), "blog", now) {
		t.Errorf("the last visitor was forgotten")
	}
}

// BenchmarkDedupSeen measures one check of a new pair and reports the bytes per remembered pair.
func BenchmarkDedupSeen(b *testing.B) {
	for _, window := range []time.Duration{0, 24 * time.Hour} {
		b.Run(fmt.Sprintf("window=%s", window), func(b *testing.B) {
			now := time.Unix(1_700_000_000, 0)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			d := newDedupSet(window, 2*b.N+2, now)
			b.ResetTimer()
			for i := range b.N {
				d.seen(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "blog/post-1", now)
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "B/pair")
			runtime.KeepAlive(d)
		})
	}
}

// BenchmarkDedupDuplicate measures the check of a pair that is already remembered.
func BenchmarkDedupDuplicate(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	d := newDedupSet(24*time.Hour, 1_000_000, now)
	a := netip.MustParseAddr("203.0.113.1")
	d.seen(a, "blog/post-1", now)
	b.ReportAllocs()
	for b.Loop() {
		d.seen(a, "blog/post-1", now)
	}
}

// TestDedupExpiresWithoutCalls checks that the hashes of a window go once it has passed,
// each at its own time, and the old generation with its key once it is empty.
func TestDedupExpiresWithoutCalls(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	d := newDedupSet(time.Hour, 1000, t0)
	for i := range 10 {
		d.seen(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "blog", t0.Add(time.Duration(i)*5*time.Minute))
	}
	for _, c := range []struct {
		after time.Duration
		want  int
	}{
		{59 * time.Minute, 10}, // the first is 59 minutes old
		{61 * time.Minute, 9},  // rotated; the first is past its window
		{90 * time.Minute, 4},  // those counted at 35, 40, 45 and 50 minutes are left
		{105 * time.Minute, 1}, // the one counted at 45... is gone, 50 is not
		{111 * time.Minute, 0}, // none left
	} {
		d.mu.Lock()
		d.expire(t0.Add(c.after))
		prev := d.prev
		d.mu.Unlock()
		if got := d.len(); got != c.want {
			t.Errorf("after %s with no call: %d hashes; want %d", c.after, got, c.want)
		}
		if c.want == 0 && prev != nil {
			t.Errorf("after %s with no call: the old generation is kept; want it dropped with its key", c.after)
		}
	}
}
