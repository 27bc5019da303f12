package main

import "testing"

// oldBotMarkers are the markers isBot used before isbot's patterns, kept to compare.
var oldBotMarkers = []string{
	"bot", "crawl", "spider", "slurp", "archiver", "scrape", "fetch",
	"headless", "phantomjs", "selenium", "puppeteer", "playwright", "lighthouse",
	"preview", "facebookexternalhit", "embedly", "whatsapp", "telegram", "skypeuripreview",
	"vkshare", "pinterest", "snippet", "feed", "rss", "monitor", "uptime", "pingdom",
	"curl/", "wget/", "python-", "python/", "go-http-client", "java/", "okhttp",
	"libwww", "httpclient", "axios/", "node-fetch", "undici", "ruby", "perl", "php/",
	"http_request", "scrapy", "nutch", "ia_archiver", "check_http", "zgrab", "masscan",
}

// oldMarkersByFirstByte indexes oldBotMarkers by their first byte.
var oldMarkersByFirstByte = func() (idx [256][]string) {
	for _, m := range oldBotMarkers {
		idx[m[0]] = append(idx[m[0]], m)
	}
	return idx
}()

// isBotMarkersOnly is isBot as it was before isbot's patterns: empty, or one of
// oldBotMarkers in the first maxUserAgent bytes.
func isBotMarkersOnly(ua string) bool {
	if ua == "" {
		return true
	}
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	for i := range len(ua) {
		for _, m := range oldMarkersByFirstByte[oldLower(ua[i])] {
			if oldHasPrefixFold(ua[i:], m) {
				return true
			}
		}
	}
	return false
}

// oldLower returns the ASCII lower case of c, as isBotMarkersOnly did.
func oldLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// oldHasPrefixFold reports whether s starts with the lower-case marker m, ignoring ASCII
// case, as isBotMarkersOnly did.
func oldHasPrefixFold(s, m string) bool {
	if len(s) < len(m) {
		return false
	}
	for j := range len(m) {
		if oldLower(s[j]) != m[j] {
			return false
		}
	}
	return true
}

// longBrowserUA is a real in-app browser User-Agent of 259 bytes that no rule matches:
// isBot reads all of it, the worst case of the byte scan.
const longBrowserUA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.38.109;FBBV/614281937;FBDV/iPhone15,3;FBMD/iPhone;FBSN/iOS;FBSV/17.5.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/616521513]"

// compatibleBrowserUA is a real Internet Explorer User-Agent that every byte filter
// lets through to the regexp of isbot's ^mozilla/\d\.\d\s\((?:compatible;)?...\)$: the
// worst case of the regexps.
const compatibleBrowserUA = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0; .NET CLR 2.0.50727)"

// BenchmarkIsBot compares the marker-only isBot with the one over isbot's patterns on a
// long browser User-Agent, an old compatible browser, a short crawler and a cycle
// through testdata's browsers.
func BenchmarkIsBot(b *testing.B) {
	browsers := readUserAgents(b, "browsers.txt")
	for _, impl := range []struct {
		name string
		f    func(string) bool
	}{{"markers-only", isBotMarkersOnly}, {"isbot", isBot}} {
		for _, c := range []struct {
			name string
			uas  []string
		}{
			{"long-browser", []string{longBrowserUA}},
			{"compatible-browser", []string{compatibleBrowserUA}},
			{"short-crawler", []string{"Mozilla/5.0 (compatible; bingbot/2.0)"}},
			{"browser-list", browsers},
		} {
			b.Run(impl.name+"/"+c.name, func(b *testing.B) {
				n := 0
				for i := 0; b.Loop(); i++ {
					if impl.f(c.uas[i%len(c.uas)]) {
						n++
					}
				}
				if want := c.name == "short-crawler"; (n > 0) != want {
					b.Fatalf("%s matched %d of %d; want bots %v", c.name, n, b.N, want)
				}
			})
		}
	}
}
