package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// outcome is what happened to one /call request; its name is sent in X-OxiTraffic.
type outcome int

// The outcomes of /call, in the order of their names in outcomeNames.
const (
	outCounted outcome = iota
	outQueued
	outDuplicate
	outBot
	outPrefetch
	outDNT
	outDropped
	outInvalid
	outUnknown
	outLimited
	outUnavailable
	numOutcomes
)

// outcomeNames are the X-OxiTraffic values and the metrics labels of the outcomes.
var outcomeNames = [numOutcomes]string{
	"counted", "queued", "duplicate", "bot", "prefetch", "dnt", "dropped",
	"invalid", "unknown", "limited", "unavailable",
}

// outcomeHeaders are the X-OxiTraffic header values, made once so that answers share them.
var outcomeHeaders = func() (h [numOutcomes][]string) {
	for o, name := range outcomeNames {
		h[o] = []string{name}
	}
	return h
}()

// server answers every HTTP request of OxiTraffic.
type server struct {
	store    *store
	verify   *verifier
	dedup    *dedupSet
	log      *slog.Logger
	loc      *time.Location
	trusted  []netip.Prefix
	bots     bool   // ignore crawlers and prefetches
	dnt      bool   // respect DNT and Sec-GPC
	site     string // the tracked website's host, shown on the pages
	metrics  bool   // serve /metrics on the main listener
	image    []byte
	imageHdr http.Header // headers of the image answer, shared by every answer
	outcomes [numOutcomes]atomic.Int64
}

// contentTypes maps the response image's extension to its Content-Type.
var contentTypes = map[string]string{
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".gif":  "image/gif",
	".webp": "image/webp",
	".jpg":  "image/jpeg",
	".jpeg": "image/jpeg",
	".ico":  "image/x-icon",
}

// contentType returns the Content-Type for an image file name.
func contentType(name string) (string, error) {
	ct, ok := contentTypes[strings.ToLower(filepath.Ext(name))]
	if !ok {
		return "", fmt.Errorf("%q has no image extension (svg, png, gif, webp, jpg, ico)", name)
	}
	return ct, nil
}

// routes returns the handler of every endpoint.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /call", s.handleCall)
	// A prefix, not /call/{path...}: handleCall reads the escaped path itself, and the
	// wildcard's matching cost two allocations per call.
	mux.HandleFunc("GET /call/", s.handleCall)
	mux.HandleFunc("GET /api/counts", s.handleCounts)
	mux.HandleFunc("GET /api/count", s.handleCount)
	mux.HandleFunc("GET /api/count/{path...}", s.handleCount)
	mux.HandleFunc("GET /api/history", s.handleHistory)
	mux.HandleFunc("GET /api/history/{path...}", s.handleHistory)
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /dashboard/{$}", s.handleDashboard)
	mux.HandleFunc("GET /dashboard/plot", s.handlePlot)
	mux.HandleFunc("GET /dashboard/plot/{path...}", s.handlePlot)
	mux.HandleFunc("GET /static/{file}", s.handleStatic)
	mux.HandleFunc("GET /healthz", s.handleHealth)
	if s.metrics {
		mux.HandleFunc("GET /metrics", s.handleMetrics)
	}
	return s.rejectDotSegments(mux)
}

// rejectDotSegments answers 400 for a path with "." or ".." segments, which ServeMux
// would otherwise redirect to another path, so that /call/a/../b cannot count b.
func (s *server) rejectDotSegments(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/.") {
			for seg := range strings.SplitSeq(r.URL.Path, "/") {
				if seg == "." || seg == ".." {
					err := invalidPath(`contains a "." or ".." segment`)
					if strings.HasPrefix(r.URL.Path, "/call/") {
						s.callError(w, r, outInvalid, err)
					} else {
						s.error(w, r, err)
					}
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// handleCall answers the counter image and records one call per visitor and path.
func (s *server) handleCall(w http.ResponseWriter, r *http.Request) {
	path, err := pathAfter(r.URL.EscapedPath(), "/call")
	if err != nil {
		s.callError(w, r, outInvalid, err)
		return
	}
	now := time.Now()
	switch {
	case s.bots && isBot(r.UserAgent()):
		s.sendImage(w, outBot)
		return
	case s.bots && isPrefetch(r.Header):
		s.sendImage(w, outPrefetch)
		return
	case s.dnt && optedOut(r.Header):
		s.sendImage(w, outDNT)
		return
	}
	visitor := visitorAddr(r, s.trusted)
	id, err := s.verify.check(r.Context(), path, visitor)
	switch {
	case errors.Is(err, errUnknownPath):
		s.callError(w, r, outUnknown, err)
		return
	case errors.Is(err, errTooManyCheck):
		s.callError(w, r, outLimited, err)
		return
	case err != nil:
		s.callError(w, r, outUnavailable, err)
		return
	}
	if s.dedup.seen(visitor, path, now) {
		s.sendImage(w, outDuplicate)
		return
	}
	healthy := s.store.w.healthy.Load()
	b := s.store.w.enqueue(id, now)
	if b == nil {
		s.sendImage(w, outDropped)
		return
	}
	if !healthy {
		// PostgreSQL is down: the call waits in the queue; the visitor need not.
		s.sendImage(w, outQueued)
		return
	}
	// The writer closes done within writeTimeout, whether the COMMIT succeeded or not.
	<-b.done
	if b.ok {
		s.sendImage(w, outCounted)
	} else {
		s.sendImage(w, outQueued)
	}
}

// sendImage answers the response image and says in X-OxiTraffic what happened.
func (s *server) sendImage(w http.ResponseWriter, o outcome) {
	s.outcomes[o].Add(1)
	h := w.Header()
	for k, v := range s.imageHdr {
		h[k] = v
	}
	h["X-Oxitraffic"] = outcomeHeaders[o]
	w.Write(s.image)
}

// callError answers a /call that gets no image.
func (s *server) callError(w http.ResponseWriter, r *http.Request, o outcome, err error) {
	s.outcomes[o].Add(1)
	w.Header().Set("X-OxiTraffic", outcomeNames[o])
	s.error(w, r, err)
}

// errBadRequest wraps the errors of query parameters; their message is shown to the client.
var errBadRequest = errors.New("bad request")

// error answers err with its status and a short plain-text reason; internal errors are
// logged and shown only as a generic text.
func (s *server) error(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errInvalidPath), errors.Is(err, errBadRequest):
		httpError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, errNotFound):
		httpError(w, http.StatusNotFound, "unknown path")
	case errors.Is(err, errUnknownPath):
		httpError(w, http.StatusNotFound, "unknown path: "+errUnknownPath.Error())
	case errors.Is(err, errTooManyCheck):
		httpError(w, http.StatusTooManyRequests, errTooManyCheck.Error())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
	default:
		s.log.Error("request failed", "method", r.Method, "url", r.URL.Path, "err", err)
		httpError(w, http.StatusServiceUnavailable, "temporarily unavailable")
	}
}

// httpError writes a plain-text error answer that no cache keeps.
func httpError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// handleCounts answers every path with its count as JSON, highest first.
func (s *server) handleCounts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.store.counts())
}

// handleCount answers the count of one path as a bare integer.
func (s *server) handleCount(w http.ResponseWriter, r *http.Request) {
	path, err := pathAfter(r.URL.EscapedPath(), "/api/count")
	if err != nil {
		s.error(w, r, err)
		return
	}
	n, err := s.store.count(r.Context(), path)
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "%d\n", n)
}

// handleHistory answers the times of a path's calls as a JSON array, oldest first.
func (s *server) handleHistory(w http.ResponseWriter, r *http.Request) {
	path, err := pathAfter(r.URL.EscapedPath(), "/api/history")
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	tr, err := parseRange(q, s.loc)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if q.Has("by") {
		s.writeBuckets(w, r, path, q.Get("by"), tr)
		return
	}
	var bw *bufio.Writer
	buf := make([]byte, 0, 64)
	err = s.store.history(r.Context(), path, tr, func(t time.Time) error {
		if bw == nil {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			bw = bufio.NewWriterSize(w, 32<<10)
			bw.WriteByte('[')
		} else {
			bw.WriteByte(',')
		}
		buf = append(t.In(s.loc).AppendFormat(append(buf[:0], '"'), time.RFC3339), '"')
		_, err := bw.Write(buf)
		return err
	})
	if bw == nil {
		if err != nil {
			s.error(w, r, err)
			return
		}
		writeJSON(w, []string{})
		return
	}
	if err != nil {
		// The answer has begun: all that can be done is to end it broken and log why.
		s.log.Error("history cut short", "path", path, "err", err)
		bw.Flush()
		return
	}
	bw.WriteString("]\n")
	bw.Flush()
}

// maxBuckets bounds the buckets of one answer.
const maxBuckets = 100_000

// checkBuckets checks a bucket unit and that the range does not ask for too many buckets.
func checkBuckets(unit string, tr timeRange) error {
	if err := checkUnit(unit); err != nil {
		return err
	}
	size := bucketUnits[unit]
	if !tr.from.IsZero() {
		to := tr.to
		if to.IsZero() {
			to = time.Now()
		}
		if to.Sub(tr.from)/size > maxBuckets {
			return fmt.Errorf("%w: more than %d buckets; use a larger by= or a shorter range", errBadRequest, maxBuckets)
		}
	}
	return nil
}

// checkUnit checks the value of by=.
func checkUnit(unit string) error {
	if _, ok := bucketUnits[unit]; !ok {
		return fmt.Errorf("%w: by=%q is not one of hour, day, week, month", errBadRequest, unit)
	}
	return nil
}

// bucketJSON is one bucket of /api/history?by=.
type bucketJSON struct {
	Start string `json:"start"`
	Count int64  `json:"count"`
}

// writeBuckets answers the calls of a path per bucket as JSON.
func (s *server) writeBuckets(w http.ResponseWriter, r *http.Request, path, unit string, tr timeRange) {
	if err := checkBuckets(unit, tr); err != nil {
		s.error(w, r, err)
		return
	}
	buckets, err := s.store.buckets(r.Context(), path, unit, tr, s.loc)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := make([]bucketJSON, len(buckets))
	for i, b := range buckets {
		out[i] = bucketJSON{b.Start.Format(time.RFC3339), b.Count}
	}
	writeJSON(w, out)
}

// parseRange reads ?from= and ?to=: RFC 3339 times, or dates at the configured offset,
// where from is the start of its day and to the end of its day.
func parseRange(q map[string][]string, loc *time.Location) (timeRange, error) {
	var tr timeRange
	for _, p := range []struct {
		key   string
		dst   *time.Time
		isEnd bool
	}{{"from", &tr.from, false}, {"to", &tr.to, true}} {
		v := ""
		if vs := q[p.key]; len(vs) > 0 {
			v = vs[0]
		}
		if v == "" {
			continue
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			*p.dst = t
			continue
		}
		d, err := time.ParseInLocation(time.DateOnly, v, loc)
		if err != nil {
			return tr, fmt.Errorf("%w: %s=%q is neither an RFC 3339 time nor a date like 2026-05-01", errBadRequest, p.key, v)
		}
		if p.isEnd {
			d = d.AddDate(0, 0, 1)
		}
		*p.dst = d
	}
	if !tr.from.IsZero() && !tr.to.IsZero() && !tr.from.Before(tr.to) {
		return tr, fmt.Errorf("%w: from must be before to", errBadRequest)
	}
	return tr, nil
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// healthTimeout bounds the database check of /healthz.
const healthTimeout = 2 * time.Second

// handleHealth answers ok while PostgreSQL answers and calls are being written.
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.store.ping(r.Context(), healthTimeout); err != nil {
		httpError(w, http.StatusServiceUnavailable, "database unavailable")
		return
	}
	if !s.store.w.healthy.Load() {
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("database unavailable: %d calls queued", s.store.w.queueLen()))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

// handleMetrics answers the counters in the Prometheus text exposition format.
func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "# HELP oxitraffic_calls_total /call requests by outcome.\n# TYPE oxitraffic_calls_total counter\n")
	for o := range numOutcomes {
		fmt.Fprintf(bw, "oxitraffic_calls_total{outcome=%q} %d\n", outcomeNames[o], s.outcomes[o].Load())
	}
	v := s.verify
	fmt.Fprintf(bw, "# HELP oxitraffic_verifications_total Checks of new paths against the tracked website by result.\n# TYPE oxitraffic_verifications_total counter\n")
	for _, c := range []struct {
		name string
		n    *atomic.Int64
	}{{"found", &v.found}, {"not_found", &v.notFound}, {"failed", &v.failed}, {"rate_limited", &v.limited}} {
		fmt.Fprintf(bw, "oxitraffic_verifications_total{result=%q} %d\n", c.name, c.n.Load())
	}
	wr := s.store.w
	writeMetric(bw, "oxitraffic_calls_written_total", "counter", "Calls committed to PostgreSQL.", wr.written.Load())
	writeMetric(bw, "oxitraffic_calls_lost_total", "counter", "Calls lost because the queue was full.", wr.droppedCalls())
	writeMetric(bw, "oxitraffic_queue_length", "gauge", "Calls waiting to be written.", int64(wr.queueLen()))
	writeMetric(bw, "oxitraffic_dedup_entries", "gauge", "Remembered (visitor, path) hashes.", int64(s.dedup.len()))
	wr.batchSize.write(bw, "oxitraffic_write_batch_size", "Calls per written batch.")
	wr.latency.write(bw, "oxitraffic_write_seconds", "Time to write one batch.")
}
