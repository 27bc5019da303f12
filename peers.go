package main

// followPeers keeps the counts in memory equal to the rollups that every daemon on the
// database adds to: after another daemon's flush, within a few seconds, the writer reads
// them and the store takes them, new paths included.
func (s *store) followPeers() {
	f := s.takeCounts
	s.w.onPeers.Store(&f)
}

// takeCounts replaces the numbers of calls in memory with those of the rollups, and adds
// the paths that other daemons stored. The writer calls it right after its own flush, when
// the rollups hold every call of this daemon.
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
