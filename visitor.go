package main

import (
	"fmt"
	mathbits "math/bits"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// visitorAddr returns who is calling: the TCP peer, or, when the peer is a trusted proxy,
// the right-most X-Forwarded-For address that is not itself a trusted proxy. IPv4-mapped
// IPv6 is IPv4, and an IPv6 visitor is its /64, since privacy extensions rotate the rest.
// The address lives only for the request; it is never stored, logged or sent.
func visitorAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	return visitorOf(clientAddr(r, trusted))
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
	last  *byteSet // when set with only, a match ends at the end of the text or with one of these
	once  *byteSet // when set, whole: the lower-cased text holds each of these bytes at most once
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
	pats    []botPattern        // the patterns
	res     []func(string) bool // by pattern: botMatchers' or its compiled re; nil when exact
	tris    [1 << 10]uint64     // bit triHash of the first three bytes of each literal of lits
	lits    [256][]botLit       // the literals of two bytes or more to find anywhere, by first byte
	present [256]uint64         // bit k of byte c: lower(c) is in the k-th byte set that patterns test
	byByte  []bytePat           // patterns whose literal is one byte, found anywhere
	outside []uint64            // by pattern: the bit of the bytes not in only, for whole patterns
	atStart [256][]int          // patterns whose literal starts the text, by its first byte
	atEnd   [256][]int          // patterns whose literal ends the text, by its last byte
	rest    []int               // patterns without a literal
}

// bytePat is a pattern whose one-byte literal is found anywhere, and the bit of
// botIndex.present that stands for that byte.
type bytePat struct {
	pat int
	bit uint64
}

// triHash returns the bit of botIndex.tris for the bytes a, b, c packed as a<<16 | b<<8 | c.
// Callers set bit 0x20 of each byte, which makes an ASCII letter lower case and merges
// some other bytes: tris may find a literal where there is none, never the reverse.
func triHash(abc uint32) uint32 {
	return abc * 0x9e3779b1 >> 16
}

// bots is the index isBot uses, built from isbotPatterns and botMarkers at start.
var bots = newBotIndex(isbotPatterns, botMarkers)

// newBotIndex compiles the patterns and indexes their literals and the markers; it
// panics on a pattern bots/gen should not have written, or on more than 64 byte sets.
func newBotIndex(pats []botPattern, markers []string) *botIndex {
	if len(pats) > maxBotPatterns {
		panic(fmt.Sprintf("%d bot patterns; raise maxBotPatterns", len(pats)))
	}
	x := &botIndex{pats: pats, res: make([]func(string) bool, len(pats)), outside: make([]uint64, len(pats))}
	addLit := func(s string, pat int) {
		ab := uint32(s[0])<<16 | uint32(s[1])<<8 | 0x202020
		if len(s) > 2 {
			h := triHash(ab | uint32(s[2]))
			x.tris[h>>6] |= 1 << (h & 63)
		} else {
			// A literal of two bytes is followed by any byte, or by the end as 0.
			for c := range uint32(256) {
				h := triHash(ab | c)
				x.tris[h>>6] |= 1 << (h & 63)
			}
		}
		x.lits[s[0]] = append(x.lits[s[0]], botLit{s, pat})
	}
	var sets []byteSet
	setBit := func(s byteSet) uint64 {
		k := slices.Index(sets, s)
		if k < 0 {
			if len(sets) == 64 {
				panic("more than 64 byte sets in bot patterns")
			}
			k = len(sets)
			sets = append(sets, s)
			for c := range 256 {
				if s.has(lowerTab[c]) {
					x.present[c] |= 1 << k
				}
			}
		}
		return 1 << k
	}
	for _, m := range markers {
		addLit(m, -1)
	}
	for i, p := range pats {
		if f, ok := botMatchers[p.js]; ok {
			x.res[i] = f
		} else if !p.exact {
			x.res[i] = regexp.MustCompile(p.re).MatchString
		}
		if p.whole {
			out := *p.only
			for w := range out {
				out[w] = ^out[w]
			}
			x.outside[i] = setBit(out)
		}
		switch {
		case p.lit == "":
			x.rest = append(x.rest, i)
		case p.at == litStart:
			x.atStart[p.lit[0]] = append(x.atStart[p.lit[0]], i)
		case p.at == litEnd:
			x.atEnd[p.lit[len(p.lit)-1]] = append(x.atEnd[p.lit[len(p.lit)-1]], i)
		case len(p.lit) == 1:
			var one byteSet
			one[p.lit[0]>>6] = 1 << (p.lit[0] & 63)
			x.byByte = append(x.byByte, bytePat{i, setBit(one)})
		default:
			addLit(p.lit, i)
		}
	}
	return x
}

// botMatchers are hand-written matchers of isbot patterns whose regexp would run on many
// browsers, by the pattern's JavaScript source; each decides as the pattern's re does.
var botMatchers = map[string]func(string) bool{
	`^[\w \.\-\(?:\):%]+(?:/v?\d+(?:\.\d+)?(?:\.\d{1,10})*?)?(?:,|$)`: isNameVersion,
}

// isNameVersion reports whether s matches isbot's
// ^[\w \.\-\(?:\):%]+(?:/v?\d+(?:\.\d+)?(?:\.\d{1,10})*?)?(?:,|$), ignoring ASCII case: a name
// of those bytes, then maybe / and a version, then a comma or the end. Each part of the
// version ends before a byte that cannot continue it, so none is given back.
func isNameVersion(s string) bool {
	n := 0
	for n < len(s) && nameBytes.has(s[n]) {
		n++
	}
	switch {
	case n == 0:
		return false
	case n == len(s) || s[n] == ',':
		return true
	case s[n] != '/':
		return false
	}
	i := n + 1
	if i < len(s) && lowerTab[s[i]] == 'v' {
		i++
	}
	d := digits(s[i:])
	if d == 0 {
		return false
	}
	// The first .\d+ has any length, the next ones 1 to 10 digits.
	for part := 0; d > 0; part++ {
		if part > 1 && d > 10 {
			return false
		}
		i += d
		if i == len(s) || s[i] != '.' {
			break
		}
		i++
		if d = digits(s[i:]); d == 0 {
			return false
		}
	}
	return i == len(s) || s[i] == ','
}

// nameBytes are the bytes of [\w \.\-\(?:\):%], the name isNameVersion reads.
var nameBytes = func() (s byteSet) {
	for _, c := range []byte("_ .-(?:)%0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}()

// digits returns how many ASCII digits s starts with.
func digits(s string) int {
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	return n
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
	var cand [maxBotPatterns / 64]uint64
	// One pass over the bytes: seen gathers the bits of present, and literals are looked
	// for only where three bytes hash to a bit of tris; a third byte 0 stands for the end.
	c0 := lowerTab[ua[0]]
	seen := x.present[c0]
	abc := uint32(c0)
	if len(ua) > 1 {
		c := ua[1]
		seen |= x.present[c]
		abc = abc<<8 | uint32(c)
	}
	for i := 2; i < len(ua); i++ {
		c := ua[i]
		seen |= x.present[c]
		abc = abc<<8 | uint32(c)
		if h := triHash(abc&0xffffff | 0x202020); x.tris[h>>6]&(1<<(h&63)) != 0 && x.litsAt(ua, i-2, cut, &cand) {
			return true
		}
	}
	// The last two bytes can hold a literal of two.
	if len(ua) > 1 {
		if h := triHash(abc<<8&0xffffff | 0x202020); x.tris[h>>6]&(1<<(h&63)) != 0 && x.litsAt(ua, len(ua)-2, cut, &cand) {
			return true
		}
	}
	for _, i := range x.atStart[c0] {
		if hasPrefixFold(ua, x.pats[i].lit) {
			cand[i>>6] |= 1 << (i & 63)
		}
	}
	for _, i := range x.atEnd[lower(ua[len(ua)-1])] {
		if lit := x.pats[i].lit; len(ua) >= len(lit) && hasPrefixFold(ua[len(ua)-len(lit):], lit) {
			cand[i>>6] |= 1 << (i & 63)
		}
	}
	for _, b := range x.byByte {
		if seen&b.bit != 0 {
			cand[b.pat>>6] |= 1 << (b.pat & 63)
		}
	}
	for _, i := range x.rest {
		cand[i>>6] |= 1 << (i & 63)
	}
	for w, bits := range cand {
		for bits != 0 {
			i := w<<6 | mathbits.TrailingZeros64(bits)
			bits &= bits - 1
			p := &x.pats[i]
			switch {
			case p.exact:
				return true
			case p.end && cut, p.first != nil && !p.first.has(c0), seen&x.outside[i] != 0,
				p.once != nil && twice(ua, p.once):
				continue
			}
			s := ua
			if p.only != nil {
				// A match ends before the first byte not in only; keeping that byte
				// leaves $ and \b as they were on the whole text. Unless it ends the
				// text, the match ends with a byte of last.
				n, ends := 0, p.last == nil
				for n < len(ua) && p.only.has(lowerTab[ua[n]]) {
					ends = ends || p.last.has(lowerTab[ua[n]])
					n++
				}
				if n < len(ua) && !ends {
					continue
				}
				s = ua[:min(n+1, len(ua))]
			}
			if x.res[i](s) {
				return true
			}
		}
	}
	return false
}

// litsAt looks for x's literals at ua[i:]. It reports true when a marker or a pattern
// that needs nothing more stands there, and marks in cand the patterns whose regexp is
// still to be tried.
func (x *botIndex) litsAt(ua string, i int, cut bool, cand *[maxBotPatterns / 64]uint64) bool {
	for _, l := range x.lits[lowerTab[ua[i]]] {
		if !hasPrefixFold(ua[i:], l.s) {
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
			if !(p.end && cut) && x.res[l.pat](ua[i:]) {
				return true
			}
		default:
			cand[l.pat>>6] |= 1 << (l.pat & 63)
		}
	}
	return false
}

// twice reports whether s holds one of the bytes of set more than once, ignoring ASCII case.
func twice(s string, set *byteSet) bool {
	var met byteSet
	for i := range len(s) {
		if c := lowerTab[s[i]]; set.has(c) {
			if met.has(c) {
				return true
			}
			met[c>>6] |= 1 << (c & 63)
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
