package main

import (
	"net/http"
	"net/netip"
	"strings"
)

// visitorAddr returns who is calling: the TCP peer, or, when the peer is a trusted proxy,
// the right-most X-Forwarded-For address that is not itself a trusted proxy. IPv4-mapped
// IPv6 is IPv4, and an IPv6 visitor is its /64, since privacy extensions rotate the rest.
// The address lives only for the request; it is never stored, logged or sent.
func visitorAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	v := peer.Addr().Unmap()
	if isTrusted(v, trusted) {
		v = forwardedFor(r.Header.Values("X-Forwarded-For"), trusted, v)
	}
	if v.Is6() {
		p, _ := v.Prefix(64)
		return p.Addr()
	}
	return v
}

// forwardedFor walks the X-Forwarded-For chain from the right and returns the first
// address that is not a trusted proxy; garbage anywhere in the part it reads gives peer.
func forwardedFor(values []string, trusted []netip.Prefix, peer netip.Addr) netip.Addr {
	v := peer
	for i := len(values) - 1; i >= 0; i-- {
		list := values[i]
		for list != "" {
			item := list
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				item, list = list[j+1:], list[:j]
			} else {
				list = ""
			}
			a, ok := parseForwarded(strings.TrimSpace(item))
			if !ok {
				return peer
			}
			v = a
			if !isTrusted(a, trusted) {
				return a
			}
		}
	}
	// Every hop was a trusted proxy: the left-most is the closest thing to the visitor.
	return v
}

// parseForwarded parses one X-Forwarded-For entry: an address, possibly with a port.
func parseForwarded(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// isTrusted reports whether a lies in one of the trusted proxy prefixes.
func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// botMarkers are lower-case User-Agent fragments of clients that are not visitors:
// crawlers, spiders, headless browsers, link previewers, feed readers, monitors and
// command-line or library HTTP clients. Matching is plain substring search.
var botMarkers = []string{
	"bot", "crawl", "spider", "slurp", "archiver", "scrape", "fetch",
	"headless", "phantomjs", "selenium", "puppeteer", "playwright", "lighthouse",
	"preview", "facebookexternalhit", "embedly", "whatsapp", "telegram", "skypeuripreview",
	"vkshare", "pinterest", "snippet", "feed", "rss", "monitor", "uptime", "pingdom",
	"curl/", "wget/", "python-", "python/", "go-http-client", "java/", "okhttp",
	"libwww", "httpclient", "axios/", "node-fetch", "undici", "ruby", "perl", "php/",
	"http_request", "scrapy", "nutch", "ia_archiver", "check_http", "zgrab", "masscan",
}

// markersByFirstByte indexes botMarkers by their first byte, so that isBot looks at each
// byte of a User-Agent once and compares only the few markers that start with it.
var markersByFirstByte = func() (idx [256][]string) {
	for _, m := range botMarkers {
		idx[m[0]] = append(idx[m[0]], m)
	}
	return idx
}()

// maxUserAgent is how much of a User-Agent is looked at; real browsers send far less.
const maxUserAgent = 512

// isBot reports whether the User-Agent is empty or contains one of botMarkers, ignoring case.
func isBot(ua string) bool {
	if ua == "" {
		return true
	}
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	for i := range len(ua) {
		for _, m := range markersByFirstByte[lower(ua[i])] {
			if hasPrefixFold(ua[i:], m) {
				return true
			}
		}
	}
	return false
}

// lower returns the ASCII lower case of c.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixFold reports whether s starts with the lower-case marker m, ignoring ASCII case.
func hasPrefixFold(s, m string) bool {
	if len(s) < len(m) {
		return false
	}
	for j := range len(m) {
		if lower(s[j]) != m[j] {
			return false
		}
	}
	return true
}

// isPrefetch reports whether the browser is only prefetching the image, not showing it.
func isPrefetch(h http.Header) bool {
	return strings.Contains(h.Get("Sec-Purpose"), "prefetch") || strings.Contains(h.Get("Purpose"), "prefetch")
}

// optedOut reports whether the request carries DNT: 1 or Sec-GPC: 1.
func optedOut(h http.Header) bool {
	return strings.TrimSpace(h.Get("DNT")) == "1" || strings.TrimSpace(h.Get("Sec-GPC")) == "1"
}
