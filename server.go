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
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// server answers every HTTP request of OxiTraffic.
type server struct {
	store   *store
	verify  *verifier
	dedup   *dedupSet
	log     *slog.Logger
	loc     *time.Location
	trusted []netip.Prefix
	ignore  []netip.Prefix // visitors never counted: the owner's own addresses
	hosts   []string       // hosts whose pages may embed the counter: the tracked site's and allowed_referrers
	bots    bool           // ignore crawlers and prefetches
	dnt     bool           // respect DNT and Sec-GPC
	site    string         // the tracked website's host, shown on the pages
	metrics bool           // serve /metrics on the main listener, to this machine only
	// outcomeHeader sends X-OxiTraffic with every /call answer (outcome_header).
	outcomeHeader bool
	// badgeLabel is the badge's label (badge_label); empty: defaultBadgeLabel.
	badgeLabel string
	image      []byte
	imageHdr   http.Header // headers of the image answer, shared by every answer
	noStoreHdr http.Header // the same for answers that did not count for a reason that passes
	outcomes   [numOutcomes]atomic.Int64
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
	// The owner's reads share the database's read slots fairly between clients.
	mux.HandleFunc("GET /api/counts", s.perClient(s.handleCounts))
	mux.HandleFunc("GET /api/count", s.perClient(s.handleCount))
	mux.HandleFunc("GET /api/count/{path...}", s.perClient(s.handleCount))
	mux.HandleFunc("GET /api/history", s.perClient(s.handleHistory))
	mux.HandleFunc("GET /api/history/{path...}", s.perClient(s.handleHistory))
	mux.HandleFunc("GET /api/total", s.perClient(s.handleTotal))
	mux.HandleFunc("GET /badge", s.perClient(s.handleBadge))
	mux.HandleFunc("GET /badge/{path...}", s.perClient(s.handleBadge))
	mux.HandleFunc("GET /robots.txt", s.handleRobots)
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /dashboard/{$}", s.perClient(s.handleDashboard))
	mux.HandleFunc("GET /dashboard/plot", s.perClient(s.handlePlot))
	mux.HandleFunc("GET /dashboard/plot/{path...}", s.perClient(s.handlePlot))
	mux.HandleFunc("GET /static/{file}", s.handleStatic)
	mux.HandleFunc("GET /healthz", s.handleHealth)
	if s.metrics {
		mux.HandleFunc("GET /metrics", s.onlyLocal(s.handleMetrics))
	}
	return s.rejectDotSegments(mux)
}

// perClient has the handler's database reads counted against its client's fair share of
// the read slots.
func (s *server) perClient(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, r.WithContext(withReadClient(r.Context(), visitorAddr(r, s.trusted))))
	}
}

// onlyLocal answers 403 unless the request comes from this machine itself: a loopback peer
// that forwards no other client's request.
func (s *server) onlyLocal(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		local := err == nil && ap.Addr().IsLoopback()
		for _, k := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
			local = local && r.Header.Get(k) == ""
		}
		if !local {
			httpError(w, http.StatusForbidden, "metrics are answered only on this machine; metrics_address serves them elsewhere")
			return
		}
		h(w, r)
	}
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
	case errors.Is(err, errBusy):
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, errBusy.Error())
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

// historyPageSize is the most call times one answer of /api/history holds; a longer
// history is answered in pages linked by the Link header.
const historyPageSize = 50_000

// maxBuckets bounds the buckets of one answer.
const maxBuckets = 10_000

// handleHistory answers the times of a path's calls as a JSON array, oldest first, a page
// at a time, or with ?by= its calls per bucket.
func (s *server) handleHistory(w http.ResponseWriter, r *http.Request) {
	path, err := pathAfter(r.URL.EscapedPath(), "/api/history")
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	tr, asCSV, err := parseRangeFormat(q, s.loc)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if q.Has("by") {
		s.writeBuckets(w, r, q.Get("by"), tr, asCSV, "history-"+fileSafe(path),
			func(ctx context.Context, unit bucketUnit, tr timeRange) ([]bucket, error) {
				return s.readBuckets(ctx, path, unit, tr)
			})
		return
	}
	var after *historyCursor
	if c := q.Get("after"); c != "" {
		if after, err = parseCursor(c); err != nil {
			s.error(w, r, err)
			return
		}
	}
	page, err := s.readHistory(r.Context(), path, tr, after)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// The rows are read and the read slot is free: the client may take its time now.
	if page.next != nil {
		q.Set("after", page.next.String())
		next := url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: q.Encode()}
		w.Header().Set("Link", "<"+next.String()+`>; rel="next"`)
	}
	if asCSV {
		s.writeTimesCSV(w, "history-"+fileSafe(path), tr, page.times)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(w, 32<<10)
	buf := make([]byte, 0, 64)
	bw.WriteByte('[')
	for i, t := range page.times {
		if i > 0 {
			bw.WriteByte(',')
		}
		buf = append(t.In(s.loc).AppendFormat(append(buf[:0], '"'), time.RFC3339), '"')
		bw.Write(buf)
	}
	bw.WriteString("]\n")
	bw.Flush()
}

// readHistory reads one page of a path's call times.
func (s *server) readHistory(ctx context.Context, path string, tr timeRange, after *historyCursor) (historyPage, error) {
	rd, err := s.store.read(ctx)
	if err != nil {
		return historyPage{}, err
	}
	defer rd.close()
	id, err := rd.pathID(path)
	if err != nil {
		return historyPage{}, err
	}
	return rd.history(id, tr, after, historyPageSize)
}

// String renders the cursor as the value of ?after=.
func (c historyCursor) String() string {
	return strconv.FormatInt(c.micros, 10) + "." + strconv.Itoa(c.skip)
}

// parseCursor reads the value of ?after=, as historyCursor.String writes it.
func parseCursor(s string) (*historyCursor, error) {
	m, k, ok := strings.Cut(s, ".")
	micros, err1 := strconv.ParseInt(m, 10, 64)
	skip, err2 := strconv.Atoi(k)
	// A real cursor skips fewer calls than a page holds, unless more than a page of calls
	// share one microsecond, which the writer cannot make.
	if !ok || err1 != nil || err2 != nil || skip < 0 || skip > historyPageSize ||
		micros < minRangeTime.UnixMicro() || micros > maxRangeTime.UnixMicro() {
		return nil, fmt.Errorf("%w: after=%q is not a cursor from a Link header", errBadRequest, s)
	}
	return &historyCursor{micros: micros, skip: skip}, nil
}

// checkBuckets refuses a range that holds more than maxBuckets buckets of unit.
func checkBuckets(unit bucketUnit, tr timeRange, loc *time.Location) error {
	if n := unit.count(tr.from, tr.to, loc); n > maxBuckets {
		return fmt.Errorf("%w: from %s to %s is %d buckets per %s, more than %d; use a larger by= or a shorter range (from=, to=)",
			errBadRequest, tr.from.In(loc).Format(time.DateOnly), tr.to.In(loc).Format(time.DateOnly), n, unit.name, maxBuckets)
	}
	return nil
}

// bucketJSON is one bucket of /api/history?by= and /api/total?by=.
type bucketJSON struct {
	Start string `json:"start"`
	Count int64  `json:"count"`
}

// writeBuckets answers the calls per bucket of by= (a page's or the whole site's, as read
// reads them) as JSON, or as CSV in a file named name-per-unit. The unit, and the number of
// buckets of a closed range, are checked before any read.
func (s *server) writeBuckets(w http.ResponseWriter, r *http.Request, by string, tr timeRange, asCSV bool,
	name string, read func(context.Context, bucketUnit, timeRange) ([]bucket, error)) {
	unit, err := parseUnit(by)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if !tr.from.IsZero() && !tr.to.IsZero() {
		// Refused before any read, however busy the database is.
		if err := checkBuckets(unit, tr, s.loc); err != nil {
			s.error(w, r, err)
			return
		}
	}
	buckets, err := read(r.Context(), unit, tr)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if asCSV {
		s.writeBucketsCSV(w, name+"-per-"+unit.name, tr, buckets)
		return
	}
	writeBucketsJSON(w, buckets)
}

// writeBucketsJSON answers buckets as JSON.
func writeBucketsJSON(w http.ResponseWriter, buckets []bucket) {
	out := make([]bucketJSON, len(buckets))
	for i, b := range buckets {
		out[i] = bucketJSON{b.Start.Format(time.RFC3339), b.Count}
	}
	writeJSON(w, out)
}

// readBuckets reads the calls of a path per bucket.
func (s *server) readBuckets(ctx context.Context, path string, unit bucketUnit, tr timeRange) ([]bucket, error) {
	rd, err := s.store.read(ctx)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	id, err := rd.pathID(path)
	if err != nil {
		return nil, err
	}
	return rd.buckets(id, unit, tr)
}

// The bounds of from= and to=.
var (
	minRangeTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).Add(-24 * time.Hour)
	maxRangeTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).Add(24 * time.Hour)
)

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
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			d, err := time.Parse(time.DateOnly, v)
			if err != nil {
				return tr, fmt.Errorf("%w: %s=%q is neither an RFC 3339 time nor a date like 2026-05-01", errBadRequest, p.key, v)
			}
			// A local day, which starts at 01:00 where the clocks change at midnight.
			y, m, day := d.Date()
			if p.isEnd {
				day++
			}
			t = dateStart(y, m, day, loc)
		}
		// No call is older than the Unix epoch, and the year 1 is the zero time, which
		// stands for an open end.
		if t.Before(minRangeTime) || t.After(maxRangeTime) {
			return tr, fmt.Errorf("%w: %s=%q: from and to must lie between 1970-01-01 and 9999-12-31", errBadRequest, p.key, v)
		}
		*p.dst = t
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

// handleHealth answers ok while the writer reaches PostgreSQL, as its last write or a check
// on its own connection shows. It takes no read slot, so that busy readers cannot make it fail.
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if !s.store.checkHealth(r.Context()) {
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("database unavailable: %d calls queued", s.store.queueLen()))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}
