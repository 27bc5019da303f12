package main

import (
	"bytes"
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
var pages = template.Must(template.New("").Funcs(template.FuncMap{"calls": calls}).ParseFS(web, "web/pages.html"))

// calls says how many calls, in words: "1 call", "3 calls".
func calls(n int64) string {
	if n == 1 {
		return "1 call"
	}
	return fmt.Sprintf("%d calls", n)
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
	Title  string
	Site   string
	Offset string
}

// newPage fills the common parts of a page.
func (s *server) newPage(title string) page {
	return page{Title: title, Site: s.site, Offset: s.loc.String()}
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

// dashboardRow is one path of the dashboard.
type dashboardRow struct {
	Name, Link string
	Count      int64
}

// handleDashboard lists every path with its count, highest first, each linking to its plot.
func (s *server) handleDashboard(w http.ResponseWriter, r *http.Request) {
	counts := s.store.counts()
	first, ok, err := s.store.firstCall(r.Context())
	if err != nil {
		s.error(w, r, err)
		return
	}
	data := struct {
		page
		Counts []dashboardRow
		Total  int64
		Since  string
	}{page: s.newPage("Traffic")}
	for _, c := range counts {
		data.Counts = append(data.Counts, dashboardRow{pathName(c.Path), plotLink(c.Path), c.Count})
		data.Total += c.Count
	}
	if ok {
		data.Since = first.In(s.loc).Format("2 January 2006")
	}
	s.render(w, r, "dashboard", data)
}

// plotRanges are the ranges a plot offers, in days back from today (0: all).
var plotRanges = []struct {
	key, label string
	days       int
}{{"7d", "last 7 days", 7}, {"30d", "last 30 days", 30}, {"1y", "last year", 365}, {"all", "all", 0}}

// plotUnits are the bucket sizes a plot offers, finest first.
var plotUnits = []string{"hour", "day", "week", "month"}

// choice is one link of the plot's range or bucket choices.
type choice struct {
	Label, Link string
	Current     bool
}

// handlePlot draws the history of a path as an SVG plot.
func (s *server) handlePlot(w http.ResponseWriter, r *http.Request) {
	path, err := pathAfter(r.URL.EscapedPath(), "/dashboard/plot")
	if err != nil {
		s.error(w, r, err)
		return
	}
	id, err := s.store.pathID(r.Context(), path)
	if err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	rangeKey := q.Get("range")
	if rangeKey == "" {
		rangeKey = "all"
	}
	days := -1
	for _, pr := range plotRanges {
		if pr.key == rangeKey {
			days = pr.days
		}
	}
	if days < 0 {
		s.error(w, r, fmt.Errorf("%w: range=%q is not one of 7d, 30d, 1y, all", errBadRequest, rangeKey))
		return
	}
	unit := q.Get("by")
	if unit != "" {
		if err := checkUnit(unit); err != nil {
			s.error(w, r, err)
			return
		}
	}
	total, first, err := s.store.pathStats(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}

	now := time.Now().In(s.loc)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, s.loc)
	tr := timeRange{from: today.AddDate(0, 0, 1-days), to: today.AddDate(0, 0, 1)}
	if days == 0 && total > 0 {
		f := first.In(s.loc)
		tr.from = time.Date(f.Year(), f.Month(), f.Day(), 0, 0, 0, 0, s.loc)
	}
	span := tr.to.Sub(tr.from)
	note := ""
	if unit == "" {
		unit = "day"
		if span > 400*24*time.Hour {
			unit = "week"
		}
		if span > 5*365*24*time.Hour {
			unit = "month"
		}
	}
	for i, u := range plotUnits {
		if u == unit && span/bucketUnits[u] > plotMaxBars && i+1 < len(plotUnits) {
			note = fmt.Sprintf("Per %s this range has more than %d bars; shown per %s.", u, plotMaxBars, plotUnits[i+1])
			unit = plotUnits[i+1]
		}
	}

	data := struct {
		page
		Name    string
		Total   int64
		InRange int64
		Ranges  []choice
		Units   []choice
		Note    string
		SVG     template.HTML
	}{page: s.newPage(pathName(path)), Name: pathName(path), Total: total, Note: note}
	base := plotLink(path)
	for _, pr := range plotRanges {
		data.Ranges = append(data.Ranges, choice{pr.label, base + "?range=" + pr.key, pr.key == rangeKey})
	}
	for _, u := range plotUnits {
		data.Units = append(data.Units, choice{"per " + u, base + "?range=" + rangeKey + "&by=" + u, u == unit})
	}
	if total > 0 {
		buckets, err := s.store.buckets(r.Context(), path, unit, tr, s.loc)
		if err != nil {
			s.error(w, r, err)
			return
		}
		before, err := s.store.countBefore(r.Context(), id, tr.from, s.loc)
		if err != nil {
			s.error(w, r, err)
			return
		}
		for _, b := range buckets {
			data.InRange += b.Count
		}
		if data.InRange > 0 {
			data.SVG = plotData{Path: path, Unit: unit, Buckets: buckets, Before: before}.svg()
		}
	}
	s.render(w, r, "plot", data)
}
