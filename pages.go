package main

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// web holds the page templates and the static files of the dashboard.
//
//go:embed web
var web embed.FS

// pages are the dashboard's templates, parsed once.
var pages = template.Must(template.New("").Funcs(template.FuncMap{"calls": calls, "num": thousands}).ParseFS(web, "web/pages.html"))

// calls says how many calls, in words: "1 call", "3 calls", "1,234 calls".
func calls(n int64) string {
	if n == 1 {
		return "1 call"
	}
	return thousands(n) + " calls"
}

// static is the folder served at /static/.
var static = func() fs.FS {
	sub, err := fs.Sub(web, "web/static")
	if err != nil {
		panic(err)
	}
	return sub
}()

// page is what every page shows around its content.
type page struct {
	Title       string
	Description string // the page's meta description
	Site        string
	Zone        string // where times are shown: Europe/Berlin, UTC+05:30
}

// newPage fills the common parts of a page.
func (s *server) newPage(title, description string) page {
	return page{Title: title, Description: description, Site: s.site, Zone: zoneName(s.loc)}
}

// robots keeps crawlers off the pages and the API, whose answers are numbers for the
// owner and cost a query each; the counter image and the badge may be fetched, as images
// of the pages that embed them.
const robots = `# OxiTraffic counts visits of another website; it has nothing to index.
User-agent: *
Disallow: /
Allow: /call
Allow: /badge
`

// handleRobots answers robots.txt.
func (s *server) handleRobots(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=86400")
	w.Write([]byte(robots))
}

// render executes a template into a buffer and sends it only when that succeeded.
func (s *server) render(w http.ResponseWriter, r *http.Request, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.error(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(buf.Bytes())
}

// handleStatic serves the embedded stylesheet and icon.
func (s *server) handleStatic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeFileFS(w, r, static, r.PathValue("file"))
}

// pathName shows a path as the page it counts: "" is "/".
func pathName(p string) string {
	return "/" + p
}

// plotLink is the URL of a path's plot page.
func plotLink(p string) string {
	if p == "" {
		return "/dashboard/plot"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/dashboard/plot/" + strings.Join(segs, "/")
}

// rangeChoice is a range that the plot and the dashboard offer, in days back from today
// (0: all), and how the dashboard names the period of the same length before it.
type rangeChoice struct {
	key, label, before string
	days               int
}

// plotRanges are the ranges that the plot and the dashboard offer.
var plotRanges = []rangeChoice{
	{"7d", "last 7 days", "7 days before", 7}, {"30d", "last 30 days", "30 days before", 30},
	{"1y", "last year", "year before", 365}, {"all", "all", "", 0},
}

// choice is one link of the plot's range or bucket choices.
type choice struct {
	Label, Link string
	Current     bool
}

// plotPage is what the plot page shows.
type plotPage struct {
	page
	Name    string
	Total   int64
	InRange int64
	Ranges  []choice
	Units   []choice
	Note    string
	SVG     template.HTML
}

// handlePlot draws the history of a path as an SVG plot.
func (s *server) handlePlot(w http.ResponseWriter, r *http.Request) {
	path, err := pathAfter(r.URL.EscapedPath(), "/dashboard/plot")
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	rc, err := parseRangeChoice(q)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var unit bucketUnit
	if by := q.Get("by"); by != "" {
		if unit, err = parseUnit(by); err != nil {
			s.error(w, r, err)
			return
		}
	}
	data, err := s.readPlot(r.Context(), path, rc.days, unit)
	if err != nil {
		s.error(w, r, err)
		return
	}
	base := plotLink(path)
	for _, pr := range plotRanges {
		data.Ranges = append(data.Ranges, choice{pr.label, base + "?range=" + pr.key, pr == rc})
	}
	for _, u := range bucketUnits {
		data.Units = append(data.Units, choice{"per " + u.name, base + "?range=" + rc.key + "&by=" + u.name, u.name == data.unit.name})
	}
	s.render(w, r, "plot", data.plotPage)
}

// plotRead is a plot page with the unit it is drawn in.
type plotRead struct {
	plotPage
	unit bucketUnit
}

// readPlot reads what the plot of a path over the last days (0: all) shows, per unit (the
// zero unit: one that suits the range), with one read slot and at most one rollup flush.
func (s *server) readPlot(ctx context.Context, path string, days int, unit bucketUnit) (plotRead, error) {
	rd, err := s.store.read(ctx)
	if err != nil {
		return plotRead{}, err
	}
	defer rd.close()
	id, err := rd.pathID(path)
	if err != nil {
		return plotRead{}, err
	}
	total, first, err := rd.pathStats(id)
	if err != nil {
		return plotRead{}, err
	}
	now := time.Now()
	tr := timeRange{from: addDays(now, 1-days, s.loc), to: addDays(now, 1, s.loc)}
	if days == 0 && total > 0 {
		tr.from = dayStart(first, s.loc)
	}
	note := ""
	if unit == (bucketUnit{}) {
		unit = plotUnit(tr)
	}
	for unit.count(tr.from, tr.to, s.loc) > plotMaxBars {
		next, ok := unit.coarser()
		if !ok {
			// Months over centuries: show the last plotMaxBars of them.
			tr.from = bucketUnit{"month"}.trunc(tr.to.AddDate(0, -plotMaxBars, 0), s.loc)
			note = fmt.Sprintf("This range has more than %d months; the last %d are shown.", plotMaxBars, plotMaxBars)
			break
		}
		note = fmt.Sprintf("Per %s this range has more than %d bars; shown per %s.", unit.name, plotMaxBars, next.name)
		unit = next
	}
	desc := fmt.Sprintf("Calls of %s on %s over time, counted by OxiTraffic.", pathName(path), s.site)
	data := plotRead{plotPage: plotPage{page: s.newPage(pathName(path), desc), Name: pathName(path), Total: total, Note: note}, unit: unit}
	if total == 0 {
		return data, nil
	}
	buckets, err := rd.buckets(id, unit, tr)
	if err != nil {
		return plotRead{}, err
	}
	before, err := rd.countBefore(id, tr.from)
	if err != nil {
		return plotRead{}, err
	}
	for _, b := range buckets {
		data.InRange += b.Count
	}
	if data.InRange > 0 {
		data.SVG = plotData{Path: path, Unit: unit, Buckets: buckets, Before: before}.svg()
	}
	return data, nil
}

// plotUnit is the bucket size of a plot over a range: days, weeks beyond 400 days, months
// beyond five years.
func plotUnit(tr timeRange) bucketUnit {
	span := tr.to.Sub(tr.from)
	switch {
	case span > 5*365*24*time.Hour:
		return bucketUnit{"month"}
	case span > 400*24*time.Hour:
		return bucketUnit{"week"}
	default:
		return bucketUnit{"day"}
	}
}

// parseRangeChoice returns the range that ?range= names, all when it is empty.
func parseRangeChoice(q url.Values) (rangeChoice, error) {
	key := q.Get("range")
	if key == "" {
		key = "all"
	}
	for _, pr := range plotRanges {
		if pr.key == key {
			return pr, nil
		}
	}
	return rangeChoice{}, fmt.Errorf("%w: range=%q is not one of 7d, 30d, 1y, all", errBadRequest, key)
}
