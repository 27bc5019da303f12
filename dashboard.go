package main

// The dashboard: the whole site's calls over a range, then its pages with their calls in
// that range, highest first, a page of rows at a time, each with a sparkline.

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// dashboardPerPage is how many pages one dashboard page lists.
const dashboardPerPage = 100

// dashboardRow is one path of the dashboard.
type dashboardRow struct {
	Rank       int
	Name, Link string
	Count      int64
	Previous   int64  // calls in the period before the range (7d, 30d, 1y)
	Change     string // the change from Previous to Count: "+12%", "−3%", "new", "±0%"
	Spark      template.HTML
}

// dashboardPage is what the dashboard shows.
type dashboardPage struct {
	page
	Ranges     []choice
	InRange    string // "in the last 30 days"; empty for all
	Total      int64  // calls of the whole site in the range
	Compared   bool   // whether the range has a period before it to show (7d, 30d, 1y)
	Before     string // that period: "the 7 days before"
	Previous   int64  // calls of the whole site in it
	Change     string // the change from Previous to Total, as dashboardRow.Change
	AllTime    int64  // calls of the whole site ever
	Pages      int64  // pages with calls in the range
	Since      string
	SVG        template.HTML
	Rows       []dashboardRow
	PageNo     int
	PageCount  int
	Prev, Next string
	CSVPages   string
	CSVSite    string
}

// handleDashboard shows the whole site's calls over ?range= (7d, 30d, 1y, all; default
// all), then the pages with their calls in it, ?page= by page.
func (s *server) handleDashboard(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rc, err := parseRangeChoice(q)
	if err != nil {
		s.error(w, r, err)
		return
	}
	pageNo := 1
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.error(w, r, fmt.Errorf("%w: page=%q is not a page number (1, 2, ...)", errBadRequest, v))
			return
		}
		pageNo = n
	}
	data, err := s.readDashboard(r.Context(), rc, pageNo)
	if err != nil {
		s.error(w, r, err)
		return
	}
	for _, pr := range plotRanges {
		data.Ranges = append(data.Ranges, choice{pr.label, dashboardLink(pr.key, 1), pr == rc})
	}
	if rc.days > 0 {
		data.InRange = "in the " + rc.label
	}
	if pageNo > 1 {
		data.Prev = dashboardLink(rc.key, pageNo-1)
	}
	if pageNo < data.PageCount {
		data.Next = dashboardLink(rc.key, pageNo+1)
	}
	s.render(w, r, "dashboard", data)
}

// dashboardLink is the URL of a page of the dashboard over a range.
func dashboardLink(rangeKey string, pageNo int) string {
	q := url.Values{}
	if rangeKey != "all" {
		q.Set("range", rangeKey)
	}
	if pageNo > 1 {
		q.Set("page", strconv.Itoa(pageNo))
	}
	if len(q) == 0 {
		return "/dashboard/"
	}
	return "/dashboard/?" + q.Encode()
}

// readDashboard reads what the dashboard over the range rc shows on page pageNo,
// with one read slot and at most one rollup flush; a page past the last is errBadRequest.
func (s *server) readDashboard(ctx context.Context, rc rangeChoice, pageNo int) (dashboardPage, error) {
	data := dashboardPage{
		page:    s.newPage("Traffic", fmt.Sprintf("Traffic of %s: calls of the whole site and of each page, counted by OxiTraffic.", s.site)),
		AllTime: s.store.total(),
		PageNo:  pageNo,
	}
	rd, err := s.store.read(ctx)
	if err != nil {
		return data, err
	}
	defer rd.close()
	first, ok, err := rd.firstCall()
	if err != nil {
		return data, err
	}
	if !ok {
		if pageNo > 1 {
			return data, fmt.Errorf("%w: page=%d is past the last page (1)", errBadRequest, pageNo)
		}
		data.PageCount = 1
		return data, nil
	}
	data.Since = first.In(s.loc).Format("2 January 2006")
	now := time.Now()
	tr := timeRange{from: addDays(now, 1-rc.days, s.loc), to: addDays(now, 1, s.loc)}
	var counts []pathComparison
	if rc.days == 0 {
		tr.from = dayStart(first, s.loc)
		for _, c := range s.store.counts() {
			// Pages known but never called are not pages with calls.
			if c.Count > 0 {
				counts = append(counts, pathComparison{Path: c.Path, Count: c.Count})
			}
		}
	} else {
		data.Compared, data.Before = true, "the "+rc.before
		if counts, err = rd.compareCounts(tr, previousRange(tr, s.loc)); err != nil {
			return data, err
		}
		// Pages called only in the period before are not listed, but counted in it.
		if data.Previous, err = rd.siteTotal(previousRange(tr, s.loc)); err != nil {
			return data, err
		}
	}
	data.Pages = int64(len(counts))
	data.PageCount = max(1, (len(counts)+dashboardPerPage-1)/dashboardPerPage)
	if pageNo > data.PageCount {
		return data, fmt.Errorf("%w: page=%d is past the last page (%d)", errBadRequest, pageNo, data.PageCount)
	}
	for _, c := range counts {
		data.Total += c.Count
	}
	if data.Compared {
		data.Change = change(data.Previous, data.Total)
	}
	rq := "from=" + localDate(tr.from, s.loc) + "&to=" + localDate(addDays(tr.to, -1, s.loc), s.loc)
	data.CSVPages = "/api/counts?format=csv"
	if rc.days > 0 {
		data.CSVPages += "&" + rq + "&compare=previous"
	}
	unit := dashboardUnit(tr)
	data.CSVSite = "/api/total?by=" + unit.name + "&" + rq + "&format=csv"
	if data.Total == 0 {
		return data, nil
	}
	buckets, err := rd.siteBuckets(unit, tr)
	if err != nil {
		return data, err
	}
	before := int64(0)
	if rc.days > 0 {
		if before, err = rd.siteSum(time.Time{}, tr.from); err != nil {
			return data, err
		}
	}
	data.SVG = plotData{Name: "the whole site", Unit: unit, Buckets: buckets, Before: before}.svg()

	shown := counts[(pageNo-1)*dashboardPerPage : min(len(counts), pageNo*dashboardPerPage)]
	ids := make([]int32, 0, len(shown))
	for _, c := range shown {
		if id, ok := s.store.knownPath(c.Path); ok {
			ids = append(ids, id)
		}
	}
	sparkUnit := sparkUnit(tr)
	starts := sparkUnit.starts(tr.from, tr.to, s.loc)
	sparks, err := rd.sparks(ids, starts, tr.to)
	if err != nil {
		return data, err
	}
	suffix := ""
	if rc.days > 0 {
		suffix = "?range=" + rc.key
	}
	for i, c := range shown {
		id, _ := s.store.knownPath(c.Path)
		values := sparks[id]
		if values == nil {
			values = make([]int64, len(starts))
		}
		row := dashboardRow{
			Rank: (pageNo-1)*dashboardPerPage + i + 1, Name: pathName(c.Path), Link: plotLink(c.Path) + suffix,
			Count: c.Count, Spark: sparkline(values, sparkUnit),
		}
		if data.Compared {
			row.Previous, row.Change = c.Previous, change(c.Previous, c.Count)
		}
		data.Rows = append(data.Rows, row)
	}
	return data, nil
}

// change says how much more or less now is than before, in percent: "+12%", "−3%", "±0%",
// or "new" when there was nothing before.
func change(before, now int64) string {
	switch {
	case before == 0 && now == 0:
		return "±0%"
	case before == 0:
		return "new"
	}
	p := math.Round(float64(now-before) / float64(before) * 100)
	switch {
	case p > 0:
		return fmt.Sprintf("+%.0f%%", p)
	case p < 0:
		return fmt.Sprintf("−%.0f%%", -p)
	default:
		return "±0%"
	}
}

// dashboardUnit is the bucket size of the site's plot: hours over a week at most, then as
// a page's plot.
func dashboardUnit(tr timeRange) bucketUnit {
	if tr.to.Sub(tr.from) <= 8*24*time.Hour {
		return bucketUnit{"hour"}
	}
	return plotUnit(tr)
}

// sparkUnit is the bucket size of the sparklines: days over a month at most, weeks over
// 400 days at most, months beyond.
func sparkUnit(tr timeRange) bucketUnit {
	switch span := tr.to.Sub(tr.from); {
	case span <= 32*24*time.Hour:
		return bucketUnit{"day"}
	case span <= 400*24*time.Hour:
		return bucketUnit{"week"}
	default:
		return bucketUnit{"month"}
	}
}
