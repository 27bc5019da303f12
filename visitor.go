package main

import (
	"fmt"
	mathbits "math/bits"
	"net/http"
	"net/netip"
	"regexp"
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

// botMarkers are lower-case User-Agent fragments of clients that are not visitors, kept
// beside isbot's patterns (bots_gen.go) for what those leave out: headless browsers, link
// previewers, feed readers, monitors and command-line or library HTTP clients. Matching
// is plain substring search. A bare "bot" is left to isbot, whose pattern spares
// Cubot phones.
var botMarkers = []string{
	"crawl", "spider", "slurp", "archiver", "scrape", "fetch",
	"headless", "phantomjs", "selenium", "puppeteer", "playwright", "lighthouse",
	"preview", "facebookexternalhit", "embedly", "whatsapp", "telegram", "skypeuripreview",
	"vkshare", "pinterest", "snippet", "feed", "rss", "monitor", "uptime", "pingdom",
	"curl/", "wget/", "python-", "python/", "go-http-client", "java/", "okhttp",
	"libwww", "httpclient", "axios/", "node-fetch", "undici", "ruby", "perl", "php/",
	"http_request", "scrapy", "nutch", "ia_archiver", "check_http", "zgrab", "masscan",
}

// maxUserAgent is how much of a User-Agent is looked at; real browsers send far less.
const maxUserAgent = 512

// litPos is where a botPattern's literal must stand in a User-Agent.
type litPos uint8

const (
	litAnywhere litPos = iota // anywhere
	litStart                  // at the start
	litEnd                    // at the end
)

// byteSet is a set of bytes, one bit each.
type byteSet [4]uint64

// has reports whether c is in s.
func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }

// within reports whether every byte of s is in t.
func (s *byteSet) within(t *byteSet) bool {
	return s[0]&^t[0]|s[1]&^t[1]|s[2]&^t[2]|s[3]&^t[3] == 0
}

// botPattern is one crawler pattern of isbot translated to Go by bots/gen, with the
// filters that let isBot skip its regexp: a match needs all that is set.
type botPattern struct {
	js    string   // isbot's JavaScript source, for the reader
	lit   string   // a lower-case literal every match contains, in place at; may be empty
	at    litPos   // where lit stands
	exact bool     // a match of lit is a match of the pattern, which has no re
	re    string   // the Go regexp, ASCII case-insensitive like JavaScript's i flag
	end   bool     // the pattern holds $, so it is not tried on a cut User-Agent
	first *byteSet // when set, the lower-cased first byte must be in it
	only  *byteSet // when set, re is anchored at the start and matches only these bytes
	whole bool     // re is anchored at both ends: every byte must be in only
	here  bool     // re is anchored at the start and tried where lit stands
	// notBefore are lower-case literals none of which may end just before lit: a
	// lookbehind, tested where lit stands
	notBefore []string
}

// maxBotPatterns bounds len(isbotPatterns), so that isBot marks candidates on the stack.
const maxBotPatterns = 512

// botLit is a literal searched anywhere: a marker (pat < 0) or isbotPatterns[pat].lit.
type botLit struct {
	s   string
	pat int
}

// botIndex is isbotPatterns and botMarkers arranged so that isBot reads each byte of a
// User-Agent once and runs a regexp only where a pattern's literal is found.
type botIndex struct {
	pats    []botPattern     // the patterns
	res     []*regexp.Regexp // compiled isbotPatterns[i].re; nil when exact
	pairs   [1 << 10]uint64  // bit a<<8|b: a literal of lits starts with the bytes a, b
	lits    [256][]botLit    // the literals of two bytes or more to find anywhere, by first byte
	byByte  []int            // patterns whose literal is one byte, found anywhere
	atStart [256][]int       // patterns whose literal starts the text, by its first byte
	atEnd   [256][]int       // patterns whose literal ends the text, by its last byte
	rest    []int            // patterns without a literal
}

// bots is the index isBot uses, built from isbotPatterns and botMarkers at start.
var bots = newBotIndex(isbotPatterns, botMarkers)

// newBotIndex compiles the patterns and indexes their literals and the markers; it
// panics on a pattern bots/gen should not have written.
func newBotIndex(pats []botPattern, markers []string) *botIndex {
	if len(pats) > maxBotPatterns {
		panic(fmt.Sprintf("%d bot patterns; raise maxBotPatterns", len(pats)))
	}
	x := &botIndex{pats: pats, res: make([]*regexp.Regexp, len(pats))}
	addLit := func(s string, pat int) {
		x.pairs[int(s[0])<<2|int(s[1])>>6] |= 1 << (s[1] & 63)
		x.lits[s[0]] = append(x.lits[s[0]], botLit{s, pat})
	}
	for _, m := range markers {
		addLit(m, -1)
	}
	for i, p := range pats {
		if !p.exact {
			x.res[i] = regexp.MustCompile(p.re)
		}
		switch {
		case p.lit == "":
			x.rest = append(x.rest, i)
		case p.at == litStart:
			x.atStart[p.lit[0]] = append(x.atStart[p.lit[0]], i)
		case p.at == litEnd:
			x.atEnd[p.lit[len(p.lit)-1]] = append(x.atEnd[p.lit[len(p.lit)-1]], i)
		case len(p.lit) == 1:
			x.byByte = append(x.byByte, i)
		default:
			addLit(p.lit, i)
		}
	}
	return x
}

// isBot reports whether the User-Agent is empty, contains one of botMarkers, or matches
// one of isbot's patterns, ignoring ASCII case. Only its first maxUserAgent bytes are read.
func isBot(ua string) bool {
	return ua == "" || bots.match(ua)
}

// match reports whether the non-empty ua contains one of x's markers or matches one of
// its patterns. Patterns holding $ are not tried on a User-Agent cut to maxUserAgent,
// whose end was not read.
func (x *botIndex) match(ua string) bool {
	cut := len(ua) > maxUserAgent
	if cut {
		ua = ua[:maxUserAgent]
	}
	var seen byteSet
	var cand [maxBotPatterns / 64]uint64
	mark := func(i int) { cand[i>>6] |= 1 << (i & 63) }
	c := lowerTab[ua[0]]
	for i := range len(ua) {
		seen[c>>6] |= 1 << (c & 63)
		if i+1 == len(ua) {
			break
		}
		d := lowerTab[ua[i+1]]
		if x.pairs[int(c)<<2|int(d)>>6]&(1<<(d&63)) == 0 {
			c = d
			continue
		}
		for _, l := range x.lits[c] {
			if l.s[1] != d || !hasPrefixFold(ua[i:], l.s) {
				continue
			}
			if l.pat < 0 {
				return true
			}
			switch p := &x.pats[l.pat]; {
			case endsWithAny(ua[:i], p.notBefore):
			case p.exact:
				return true
			case p.here:
				if !(p.end && cut) && x.res[l.pat].MatchString(ua[i:]) {
					return true
				}
			default:
				mark(l.pat)
			}
		}
		c = d
	}
	for _, i := range x.atStart[lower(ua[0])] {
		if hasPrefixFold(ua, x.pats[i].lit) {
			mark(i)
		}
	}
	for _, i := range x.atEnd[lower(ua[len(ua)-1])] {
		if lit := x.pats[i].lit; len(ua) >= len(lit) && hasPrefixFold(ua[len(ua)-len(lit):], lit) {
			mark(i)
		}
	}
	for _, i := range x.byByte {
		if seen.has(x.pats[i].lit[0]) {
			mark(i)
		}
	}
	for _, i := range x.rest {
		mark(i)
	}
	for w, bits := range cand {
		for bits != 0 {
			i := w<<6 | mathbits.TrailingZeros64(bits)
			bits &= bits - 1
			p := &x.pats[i]
			switch {
			case p.exact:
				return true
			case p.end && cut, p.first != nil && !p.first.has(lower(ua[0])),
				p.whole && !seen.within(p.only):
				continue
			}
			s := ua
			if p.only != nil {
				// A match ends before the first byte not in only; keeping that byte
				// leaves $ and \b as they were on the whole text.
				n := 0
				for n < len(ua) && p.only.has(lowerTab[ua[n]]) {
					n++
				}
				s = ua[:min(n+1, len(ua))]
			}
			if x.res[i].MatchString(s) {
				return true
			}
		}
	}
	return false
}

// endsWithAny reports whether s ends with one of the lower-case literals, ignoring ASCII case.
func endsWithAny(s string, lits []string) bool {
	for _, l := range lits {
		if len(s) >= len(l) && hasPrefixFold(s[len(s)-len(l):], l) {
			return true
		}
	}
	return false
}

// lower returns the ASCII lower case of c.
func lower(c byte) byte {
	return lowerTab[c]
}

// lowerTab maps each byte to its ASCII lower case.
var lowerTab = func() (t [256]byte) {
	for c := range 256 {
		t[c] = byte(c)
		if 'A' <= c && c <= 'Z' {
			t[c] = byte(c + 'a' - 'A')
		}
	}
	return t
}()

// hasPrefixFold reports whether s starts with the lower-case marker m, ignoring ASCII case.
func hasPrefixFold(s, m string) bool {
	if len(s) < len(m) {
		return false
	}
	for j := range len(m) {
		if lowerTab[s[j]] != m[j] {
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
