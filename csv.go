package main

// Answers as CSV for spreadsheets: ?format=csv on /api/counts, /api/history and /api/total?by=.

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// wantCSV reads ?format=: true for csv, false for json or none; errBadRequest otherwise.
func wantCSV(q url.Values) (bool, error) {
	switch f := q.Get("format"); f {
	case "", "json":
		return false, nil
	case "csv":
		return true, nil
	default:
		return false, fmt.Errorf("%w: format=%q is not one of json, csv", errBadRequest, f)
	}
}

// parseRangeFormat reads the from=, to= and format= of an API request: the range, and
// whether the answer is CSV.
func parseRangeFormat(q url.Values, loc *time.Location) (timeRange, bool, error) {
	tr, err := parseRange(q, loc)
	if err != nil {
		return tr, false, err
	}
	asCSV, err := wantCSV(q)
	return tr, asCSV, err
}

// csvSafe keeps a spreadsheet from taking a cell for a formula: a cell that starts with
// =, +, -, @, a tab or a carriage return gets a leading apostrophe, which spreadsheets
// show as text and do not display.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// fileSafe turns a path into a part of a file name: letters, digits, '.', '-' and '_'
// stay, anything else becomes '_', without '.' or '_' at either end; the index page is
// "index", a path of nothing but other characters "page".
func fileSafe(p string) string {
	if p == "" {
		return "index"
	}
	b := []byte(p)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if s := strings.Trim(string(b[:min(len(b), 80)]), "._"); s != "" {
		return s
	}
	return "page"
}

// csvFileName names a download after what it holds and the days it covers: an open start
// is "start", an open end today, and a range ending at midnight ends on the day before.
func (s *server) csvFileName(what string, tr timeRange) string {
	from, to := "start", time.Now().In(s.loc).Format(time.DateOnly)
	if !tr.from.IsZero() {
		from = tr.from.In(s.loc).Format(time.DateOnly)
	}
	if !tr.to.IsZero() {
		end := tr.to
		if isDayStart(end, s.loc) {
			end = end.Add(-time.Microsecond)
		}
		to = end.In(s.loc).Format(time.DateOnly)
	}
	when := from + "_" + to
	if from == to {
		when = from
	}
	return "oxitraffic-" + what + "-" + when + ".csv"
}

// csvAnswer is a CSV answer being written: RFC 4180, CRLF line ends, buffered.
type csvAnswer struct {
	bw *bufio.Writer
	cw *csv.Writer
}

// startCSV sets the headers of a CSV download named name, writes the header row, and
// returns the writer of the rows; finish must be called.
func startCSV(w http.ResponseWriter, name string, header ...string) *csvAnswer {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	a := &csvAnswer{bw: bufio.NewWriterSize(w, 32<<10)}
	a.cw = csv.NewWriter(a.bw)
	a.cw.UseCRLF = true
	a.cw.Write(header)
	return a
}

// row writes one row.
func (a *csvAnswer) row(cells ...string) { a.cw.Write(cells) }

// finish flushes what is buffered.
func (a *csvAnswer) finish() {
	a.cw.Flush()
	a.bw.Flush()
}

// writeCountsCSV answers counts as CSV rows of path and count.
func (s *server) writeCountsCSV(w http.ResponseWriter, counts []pathCount, tr timeRange) {
	a := startCSV(w, s.csvFileName("counts", tr), "path", "count")
	for _, c := range counts {
		a.row(csvSafe(c.Path), strconv.FormatInt(c.Count, 10))
	}
	a.finish()
}

// writeComparisonCSV answers counts beside those of the period before as CSV rows of
// path, count and previous.
func (s *server) writeComparisonCSV(w http.ResponseWriter, counts []pathComparison, tr timeRange) {
	a := startCSV(w, s.csvFileName("counts", tr), "path", "count", "previous")
	for _, c := range counts {
		a.row(csvSafe(c.Path), strconv.FormatInt(c.Count, 10), strconv.FormatInt(c.Previous, 10))
	}
	a.finish()
}

// writeBucketsCSV answers buckets as CSV rows of start and count.
func (s *server) writeBucketsCSV(w http.ResponseWriter, what string, tr timeRange, buckets []bucket) {
	a := startCSV(w, s.csvFileName(what, tr), "start", "count")
	for _, b := range buckets {
		a.row(b.Start.Format(time.RFC3339), strconv.FormatInt(b.Count, 10))
	}
	a.finish()
}

// writeTimesCSV answers call times as CSV rows of one time each.
func (s *server) writeTimesCSV(w http.ResponseWriter, what string, tr timeRange, times []time.Time) {
	a := startCSV(w, s.csvFileName(what, tr), "time")
	for _, t := range times {
		a.row(t.In(s.loc).Format(time.RFC3339))
	}
	a.finish()
}
