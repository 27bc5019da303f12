package main

// The badge: a small SVG with a label and a page's count, to show next to the counter.

import (
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
)

// defaultBadgeLabel is the badge's label when badge_label is not given to the server.
const defaultBadgeLabel = "visits"

// handleBadge answers an SVG badge with the count of a path, from memory for a known path;
// it never counts, and answers 404 for an unknown path.
func (s *server) handleBadge(w http.ResponseWriter, r *http.Request) {
	path, err := pathAfter(r.URL.EscapedPath(), "/badge")
	if err != nil {
		s.error(w, r, err)
		return
	}
	n, err := s.store.count(r.Context(), path)
	if err != nil {
		s.error(w, r, err)
		return
	}
	label := s.badgeLabel
	if label == "" {
		label = defaultBadgeLabel
	}
	h := w.Header()
	h.Set("Content-Type", "image/svg+xml")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'")
	w.Write(badgeSVG(label, thousands(n)))
}

// thousands writes n with a comma between groups of three digits: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// textWidth estimates the width in pixels of s in 11 px Verdana; the badge also sets it as
// the text's textLength, so that other fonts are fitted to it.
func textWidth(s string) float64 {
	var w float64
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			w += 7
		case strings.ContainsRune("ijlI.,:;|!' ", r):
			w += 3.6
		case strings.ContainsRune("ftr()[]", r):
			w += 4.6
		case strings.ContainsRune("mwMW", r):
			w += 10
		case r >= 'A' && r <= 'Z':
			w += 7.6
		case r >= 0x1100:
			w += 11
		default:
			w += 6.6
		}
	}
	return w
}

// badgeSVG draws a badge: label on grey, value on blue, both in white, so that it reads
// the same on light and dark pages.
func badgeSVG(label, value string) []byte {
	lw, vw := textWidth(label), textWidth(value)
	left, right := lw+12, vw+12
	width := left + right
	title := template.HTMLEscapeString(label + ": " + value)
	l := template.HTMLEscapeString(label)
	return fmt.Appendf(nil, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="20" viewBox="0 0 %.1f 20" role="img" aria-label="%s">`+
		`<title>%s</title>`+
		`<clipPath id="r"><rect width="%.1f" height="20" rx="3"/></clipPath>`+
		`<g clip-path="url(#r)"><rect width="%.1f" height="20" fill="#555"/><rect x="%.1f" width="%.1f" height="20" fill="#0b5fc6"/></g>`+
		`<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,Geneva,sans-serif" font-size="11">`+
		`<text x="%.1f" y="14" textLength="%.1f" lengthAdjust="spacingAndGlyphs">%s</text>`+
		`<text x="%.1f" y="14" textLength="%.1f" lengthAdjust="spacingAndGlyphs">%s</text></g></svg>`+"\n",
		width, width, title, title, width, left, left, right, left/2, lw, l, left+right/2, vw, value)
}
