package main

import (
	"context"
	"time"
)

// followPeers keeps the counts in memory equal to the rollups that every daemon on the
// database adds to: after another daemon's flush, within a few seconds, the writer reads
// them and the store takes them, new paths included.
func (s *store) followPeers() {
	f := s.takeCounts
	s.w.onPeers.Store(&f)
	// The flusher, which may sleep until its look for orphaned rows, looks from now on.
	select {
	case s.w.kick <- struct{}{}:
	default:
	}
}

// takeCounts replaces the numbers of calls in memory with those given, and adds the paths
// that other daemons stored. The flusher calls it right after its own flush, with the
// rollups and the calls of this daemon that they do not hold yet.
func (s *store) takeCounts(paths map[string]int32, totals map[int32]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, id := range paths {
		s.paths[p] = id
	}
	for id, n := range totals {
		s.totals[id] = n
	}
}

// peerEvery is how often an idle writer looks whether another daemon added calls.
const peerEvery = 2 * time.Second

// maybeFollowPeers looks, every peerEvery, whether another daemon added to the rollups,
// and if so flushes this one's calls and takes the counts. The flusher calls it.
func (w *writer) maybeFollowPeers() {
	if w.onPeers.Load() == nil || time.Since(w.peerCheck) < peerEvery {
		return
	}
	w.peerCheck = time.Now()
	gen, err := w.readGeneration()
	if err != nil || (gen == w.gen && !w.mustTake) {
		return
	}
	if err := w.runFlush(); err != nil {
		w.log.Error("cannot add calls to the rollups: trying again later", "err", err)
	}
}

// readGeneration reads the rollup generation on the flusher's connection.
func (w *writer) readGeneration() (int64, error) {
	defer markBusy(&w.flushBusy)()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return readGeneration(ctx, w.db)
}

// takePeerCounts gives onPeers the counts of the rollups, right after the flusher's flush,
// and reports whether it did (or nobody listens). The rollups then hold every call of this
// daemon but those of the batches committed since the flush took them, which are added.
func (w *writer) takePeerCounts(ctx context.Context) bool {
	f := w.onPeers.Load()
	if f == nil {
		return true
	}
	paths, totals, err := readCounts(ctx, w.db)
	if err != nil {
		w.log.Warn("cannot read the counts of other daemons: trying again at the next flush", "err", err)
		return false
	}
	// Under handMu, so that no batch is handed over between the sum and the take: each is
	// counted either here or by the writer after it.
	w.handMu.Lock()
	defer w.handMu.Unlock()
	for _, b := range w.fresh {
		for _, c := range b.calls {
			totals[int32(c.pathID)]++
		}
	}
	(*f)(paths, totals)
	return true
}
