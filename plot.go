package main

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// The plot's size in SVG units, and the margins that hold the axes.
const (
	plotWidth   = 800
	plotHeight  = 320
	plotLeft    = 56
	plotRight   = 64
	plotTop     = 16
	plotBottom  = 40
	plotXTicks  = 7
	plotYTicks  = 5
	plotMaxBars = 2000
)

// plotData is what the SVG plot shows: calls per bucket as bars, and the running total,
// starting from the calls made before the first bucket, as a line.
type plotData struct {
	Path    string
	Name    string // what the plot shows, when it is not the page at Path
	Unit    bucketUnit
	Buckets []bucket
	Before  int64 // calls before the first bucket
}

// niceStep returns a step of 1, 2 or 5 times a power of ten, at least 1, that divides
// 0..max into at most n intervals.
func niceStep(max int64, n int) int64 {
	if max <= int64(n) {
		return 1
	}
	raw := float64(max) / float64(n)
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if step := m * pow; step >= raw {
			return int64(step)
		}
	}
	return int64(10 * pow)
}

// niceMax rounds max up to a whole number of steps, so that the top tick is round.
func niceMax(max int64, n int) (top, step int64) {
	step = niceStep(max, n)
	top = (max + step - 1) / step * step
	if top == 0 {
		top = step
	}
	return top, step
}

// svg draws the plot as an SVG document fragment, with a title and a description for
// screen readers. Colours come from CSS classes, so that the page's dark mode applies.
func (p plotData) svg() template.HTML {
	n := len(p.Buckets)
	var b strings.Builder
	var total, peak int64
	peakAt := 0
	for i, bk := range p.Buckets {
		total += bk.Count
		if bk.Count > peak {
			peak, peakAt = bk.Count, i
		}
	}
	name := "/" + p.Path
	if p.Name != "" {
		name = p.Name
	}
	first, last := p.Buckets[0].Start, p.Buckets[n-1].Start
	title := fmt.Sprintf("Calls of %s per %s: %d in all", name, p.Unit.name, p.Before+total)
	desc := fmt.Sprintf("%d calls from %s to %s, %d in all before and since; the busiest %s was %s with %d.",
		total, p.Unit.label(first), p.Unit.label(last), p.Before+total,
		p.Unit.name, p.Unit.label(p.Buckets[peakAt].Start), peak)
	fmt.Fprintf(&b, `<svg class="plot" viewBox="0 0 %d %d" role="img" aria-labelledby="plot-title plot-desc" xmlns="http://www.w3.org/2000/svg">`, plotWidth, plotHeight)
	fmt.Fprintf(&b, `<title id="plot-title">%s</title><desc id="plot-desc">%s</desc>`, template.HTMLEscapeString(title), template.HTMLEscapeString(desc))

	w := float64(plotWidth - plotLeft - plotRight)
	h := float64(plotHeight - plotTop - plotBottom)
	x0, y0 := float64(plotLeft), float64(plotTop)+h
	slot := w / float64(n)

	// Left axis: calls per bucket.
	top, step := niceMax(peak, plotYTicks)
	for v := int64(0); v <= top; v += step {
		y := y0 - h*float64(v)/float64(top)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x0, y, x0+w, y)
		fmt.Fprintf(&b, `<text class="tick bars" x="%.1f" y="%.1f" text-anchor="end">%d</text>`, x0-6, y+4, v)
	}
	// Right axis: running total.
	totalTop, totalStep := niceMax(p.Before+total, plotYTicks)
	for v := int64(0); v <= totalTop; v += totalStep {
		y := y0 - h*float64(v)/float64(totalTop)
		fmt.Fprintf(&b, `<text class="tick total" x="%.1f" y="%.1f">%d</text>`, x0+w+6, y+4, v)
	}

	// Bars.
	barW := math.Max(slot*0.8, 0.5)
	for i, bk := range p.Buckets {
		if bk.Count == 0 {
			continue
		}
		bh := h * float64(bk.Count) / float64(top)
		fmt.Fprintf(&b, `<rect class="bar" x="%.2f" y="%.2f" width="%.2f" height="%.2f"><title>%s: %d</title></rect>`,
			x0+slot*float64(i)+(slot-barW)/2, y0-bh, barW, bh, p.Unit.label(bk.Start), bk.Count)
	}

	// Running total, at the end of each bucket.
	b.WriteString(`<polyline class="total" points="`)
	run := p.Before
	fmt.Fprintf(&b, "%.2f,%.2f ", x0, y0-h*float64(run)/float64(totalTop))
	for i, bk := range p.Buckets {
		run += bk.Count
		fmt.Fprintf(&b, "%.2f,%.2f ", x0+slot*float64(i+1), y0-h*float64(run)/float64(totalTop))
	}
	b.WriteString(`"/>`)

	// X axis with about plotXTicks labels.
	fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x0, y0, x0+w, y0)
	every := max(1, (n+plotXTicks-1)/plotXTicks)
	for i := 0; i < n; i += every {
		x := x0 + slot*float64(i) + slot/2
		fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x, y0, x, y0+4)
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, y0+18, p.Unit.tick(p.Buckets[i].Start))
	}
	fmt.Fprintf(&b, `<text class="legend bars" x="%d" y="%d">calls per %s</text>`, plotLeft, plotHeight-4, p.Unit.name)
	fmt.Fprintf(&b, `<text class="legend total" x="%d" y="%d" text-anchor="end">running total</text>`, plotWidth-plotRight, plotHeight-4)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// The sparkline's size in SVG units.
const (
	sparkWidth  = 100
	sparkHeight = 24
)

// sparkline draws calls per bucket as a small line with its area below, scaled to its own
// peak, with its peak in words for screen readers.
func sparkline(values []int64, unit bucketUnit) template.HTML {
	var peak int64
	for _, v := range values {
		peak = max(peak, v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %d %d" preserveAspectRatio="none" role="img" aria-label="at most %s per %s" xmlns="http://www.w3.org/2000/svg">`,
		sparkWidth, sparkHeight, calls(peak), unit.name)
	n := len(values)
	if n == 0 || peak == 0 {
		fmt.Fprintf(&b, `<line class="base" x1="0" y1="%d" x2="%d" y2="%d"/></svg>`, sparkHeight-1, sparkWidth, sparkHeight-1)
		return template.HTML(b.String())
	}
	if n == 1 {
		// One bucket: a level line across.
		values, n = []int64{values[0], values[0]}, 2
	}
	x := func(i int) float64 { return float64(sparkWidth) * float64(i) / float64(n-1) }
	y := func(v int64) float64 { return 1 + float64(sparkHeight-2)*(1-float64(v)/float64(peak)) }
	var pts strings.Builder
	for i, v := range values {
		fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(v))
	}
	fmt.Fprintf(&b, `<polygon class="area" points="0,%d %s%d,%d"/>`, sparkHeight, pts.String(), sparkWidth, sparkHeight)
	fmt.Fprintf(&b, `<polyline class="line" points="%s"/></svg>`, strings.TrimSpace(pts.String()))
	return template.HTML(b.String())
}
