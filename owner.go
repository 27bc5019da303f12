package main

// The owner's view of the whole site: the handlers of /api/total and /api/counts, which
// answer the site's calls per bucket and the calls of every page within a range, beside
// those of the period before when asked.

import (
	"context"
	"fmt"
	"net/http"
)

// readRangeCounts reads every path with its calls within a range; a range open at both
// ends is answered from memory, without a read.
func (s *server) readRangeCounts(ctx context.Context, tr timeRange) ([]pathCount, error) {
	if tr.from.IsZero() && tr.to.IsZero() {
		return s.store.counts(), nil
	}
	rd, err := s.store.read(ctx)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	return rd.rangeCounts(tr)
}

// handleCounts answers every path with its count as JSON or CSV, highest first; with
// from= or to=, its calls within that range, paths without any left out; with
// compare=previous (which needs both ends), each also with its calls in the period of the
// same length just before.
func (s *server) handleCounts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tr, asCSV, err := parseRangeFormat(q, s.loc)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if q.Has("compare") {
		s.writeComparison(w, r, q.Get("compare"), tr, asCSV)
		return
	}
	counts, err := s.readRangeCounts(r.Context(), tr)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if asCSV {
		s.writeCountsCSV(w, counts, tr)
		return
	}
	writeJSON(w, counts)
}

// writeComparison answers /api/counts?compare=: the counts within tr beside those of the
// period before it. Only compare=previous is known, and it needs both ends of the range.
func (s *server) writeComparison(w http.ResponseWriter, r *http.Request, compare string, tr timeRange, asCSV bool) {
	if compare != "previous" {
		s.error(w, r, fmt.Errorf("%w: compare=%q is not previous, the one comparison there is", errBadRequest, compare))
		return
	}
	if tr.from.IsZero() || tr.to.IsZero() {
		s.error(w, r, fmt.Errorf("%w: compare=previous needs both from= and to=: the period before is one of the same length", errBadRequest))
		return
	}
	rd, err := s.store.read(r.Context())
	if err != nil {
		s.error(w, r, err)
		return
	}
	counts, err := rd.compareCounts(tr, previousRange(tr, s.loc))
	rd.close()
	if err != nil {
		s.error(w, r, err)
		return
	}
	if asCSV {
		s.writeComparisonCSV(w, counts, tr)
		return
	}
	writeJSON(w, counts)
}

// handleTotal answers the calls of all paths as a bare integer, within from= and to= when
// given; with ?by= the whole site's calls per bucket, as JSON or CSV.
func (s *server) handleTotal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tr, asCSV, err := parseRangeFormat(q, s.loc)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if q.Has("by") {
		s.writeBuckets(w, r, q.Get("by"), tr, asCSV, "total", s.readSiteBuckets)
		return
	}
	if asCSV {
		s.error(w, r, fmt.Errorf("%w: format=csv needs by=hour, day, week or month", errBadRequest))
		return
	}
	n, err := s.readTotal(r.Context(), tr)
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "%d\n", n)
}

// readTotal reads the calls of all paths within a range; without bounds it reads memory only.
func (s *server) readTotal(ctx context.Context, tr timeRange) (int64, error) {
	if tr.from.IsZero() && tr.to.IsZero() {
		return s.store.total(), nil
	}
	rd, err := s.store.read(ctx)
	if err != nil {
		return 0, err
	}
	defer rd.close()
	return rd.siteTotal(tr)
}

// readSiteBuckets reads the whole site's calls per bucket.
func (s *server) readSiteBuckets(ctx context.Context, unit bucketUnit, tr timeRange) ([]bucket, error) {
	rd, err := s.store.read(ctx)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	return rd.siteBuckets(unit, tr)
}
