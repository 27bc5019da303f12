package main

import (
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestVisitorAddr checks who the visitor is for peers and X-Forwarded-For chains.
func TestVisitorAddr(t *testing.T) {
	trusted, _ := parsePrefixes([]string{"127.0.0.0/8", "::1/128", "10.0.0.0/8"})
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"203.0.113.5:1234", nil, "203.0.113.5"},
		{"203.0.113.5:1234", []string{"198.51.100.1"}, "203.0.113.5"}, // untrusted peer: header ignored
		{"127.0.0.1:1234", []string{"198.51.100.1"}, "198.51.100.1"},
		{"127.0.0.1:1234", []string{"198.51.100.1, 10.0.0.2"}, "198.51.100.1"},          // trusted hops skipped
		{"127.0.0.1:1234", []string{"6.6.6.6, 198.51.100.1, 10.0.0.2"}, "198.51.100.1"}, // right-most untrusted
		{"127.0.0.1:1234", []string{"6.6.6.6", "198.51.100.1"}, "198.51.100.1"},         // several headers
		{"127.0.0.1:1234", []string{"garbage"}, "127.0.0.1"},
		{"127.0.0.1:1234", []string{"198.51.100.1, "}, "127.0.0.1"},
		{"127.0.0.1:1234", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"127.0.0.1:1234", []string{"[2001:db8::1]:4711"}, "2001:db8::"},
		{"127.0.0.1:1234", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"}, // all trusted: the left-most
		{"127.0.0.1:1234", []string{""}, "127.0.0.1"},
		{"[::ffff:203.0.113.9]:1234", nil, "203.0.113.9"},
		{"[2001:db8:aaaa:bbbb:1:2:3:4]:1234", nil, "2001:db8:aaaa:bbbb::"},
		{"[2001:db8:aaaa:bbbb:5:6:7:8]:1234", nil, "2001:db8:aaaa:bbbb::"},
		{"[::1]:1234", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
	} {
		r := &http.Request{RemoteAddr: c.peer, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := visitorAddr(r, trusted); got != netip.MustParseAddr(c.want) {
			t.Errorf("visitorAddr(peer %s, X-Forwarded-For %q) = %s; want %s", c.peer, c.xff, got, c.want)
		}
	}
}

// TestIsBot checks the User-Agent rules.
func TestIsBot(t *testing.T) {
	for _, c := range []struct {
		ua   string
		want bool
	}{
		{"", true},
		{desktopUA, false},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", false},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0", false},
		{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", true},
		{"Mozilla/5.0 (compatible; bingbot/2.0)", true},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36", true},
		{"facebookexternalhit/1.1", true},
		{"Slackbot-LinkExpanding 1.0", true},
		{"curl/8.5.0", true},
		{"python-requests/2.31", true},
		{"Go-http-client/1.1", true},
		{"Mozilla/5.0 (compatible; YandexSpider)", true},
		{strings.Repeat("x", 10_000) + "bot", false}, // only the first 512 bytes are read
		// Crawlers the markers alone missed, found by isbot's patterns.
		{"Mediapartners-Google", true},
		{"APIs-Google (+https://developers.google.com/webmasters/APIs-Google.html)", true},
		{"Mozilla/5.0 (compatible; Google-InspectionTool/1.0)", true},
		{"GoogleOther", true},
		{"Mozilla/4.5 (compatible; HTTrack 3.0x; Windows 98)", true},
		{"findlinks/2.0.1 (+http://wortschatz.uni-leipzig.de/findlinks/)", true},
		{"Mozilla/2.0 (compatible; Ask Jeeves/Teoma)", true},
		// isbot's lookarounds, translated: browsers that name Google, a camera app, Java.
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36 GoogleApp/15.1", false},
		{"Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36 CamScanner", false},
		{"Mozilla/5.0 (compatible; MSIE 9.0; Java; Windows NT 6.1)", false},
		// Cubot is a phone maker: the old marker "bot" took its phones for bots.
		{"Mozilla/5.0 (Linux; Android 10; Cubot X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36", false},
		{"libhttp/1.0 Google", true},
		{"Java/1.8.0_151", true},
		// A pattern anchored at the end is not tried on a cut User-Agent: ^[^ ]{50,}$.
		{strings.Repeat("x", 60), true},
		{strings.Repeat("x", 600), false},
		// A literal of two bytes, found by its pair and any third byte or the end.
		{"()", true},
		{"Mozilla/5.0 (Linux) x()", true},
		{"a|", true},
		// ^[\w \.\-\(?:\):%]+(?:/v?\d+(?:\.\d+)?(?:\.\d{1,10})*?)?(?:,|$): a match ends
		// at the end or with a comma.
		{"Foo Bar/1.2.3, x", true},
		{"Foo Bar/1.2", true},
		{"Foo (Bar) 1.0, Baz", true},
		{"Foo Bar/1.1.12345678901", false},
		{"Foo Bar/x, y", false},
	} {
		if got := isBot(c.ua); got != c.want {
			t.Errorf("isBot(%.60q) = %v; want %v", c.ua, got, c.want)
		}
	}
}

// readUserAgents returns the User-Agents of testdata/useragents/name, one a line.
func readUserAgents(t testing.TB, name string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "useragents", name))
	if err != nil {
		t.Fatal(err)
	}
	uas := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(uas) < 500 {
		t.Fatalf("%s: %d User-Agents; want hundreds", name, len(uas))
	}
	return uas
}

// TestIsBotCrawlerRecall checks that isBot finds at least 99% of the real crawler
// User-Agents of the crawler-user-agents package, a list made apart from isbot's.
func TestIsBotCrawlerRecall(t *testing.T) {
	uas := readUserAgents(t, "crawlers.txt")
	var missed []string
	for _, ua := range uas {
		if !isBot(ua) {
			missed = append(missed, ua)
		}
	}
	recall := float64(len(uas)-len(missed)) / float64(len(uas))
	t.Logf("recall %d/%d = %.4f", len(uas)-len(missed), len(uas), recall)
	for _, ua := range missed {
		t.Logf("missed: %s", ua)
	}
	if recall < 0.99 {
		t.Errorf("recall over crawlers.txt = %.4f; want >= 0.99", recall)
	}
}

// TestIsBotBrowsers checks that no real browser User-Agent of the user-agents package
// is taken for a bot.
func TestIsBotBrowsers(t *testing.T) {
	uas := readUserAgents(t, "browsers.txt")
	fp := 0
	for _, ua := range uas {
		if isBot(ua) {
			fp++
			t.Errorf("isBot(%q) = true; want false", ua)
		}
	}
	t.Logf("false positives %d/%d", fp, len(uas))
}

// TestBotPatternsGenerated checks that bots_gen.go is whole: every pattern that needs a
// regexp has one, and the literals are lower case as isBot compares them.
func TestBotPatternsGenerated(t *testing.T) {
	if len(isbotPatterns) < 100 {
		t.Fatalf("len(isbotPatterns) = %d; want isbot's list of about 200", len(isbotPatterns))
	}
	for i, p := range isbotPatterns {
		if p.exact == (p.re != "") {
			t.Errorf("isbotPatterns[%d] (%s): exact = %v with re %q", i, p.js, p.exact, p.re)
		}
		if p.lit != strings.ToLower(p.lit) {
			t.Errorf("isbotPatterns[%d] (%s): lit %q is not lower case", i, p.js, p.lit)
		}
		if p.exact && p.lit == "" {
			t.Errorf("isbotPatterns[%d] (%s): exact without a literal", i, p.js)
		}
	}
}

// TestOptOutAndPrefetch checks DNT, Sec-GPC and prefetch headers.
func TestOptOutAndPrefetch(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, c := range []struct {
		h                http.Header
		optOut, prefetch bool
	}{
		{h(), false, false},
		{h("DNT", "1"), true, false},
		{h("DNT", "0"), false, false},
		{h("Sec-GPC", "1"), true, false},
		{h("Sec-Purpose", "prefetch"), false, true},
		{h("Sec-Purpose", "prefetch;prerender"), false, true},
		{h("Purpose", "prefetch"), false, true},
	} {
		if got := optedOut(c.h); got != c.optOut {
			t.Errorf("optedOut(%v) = %v; want %v", c.h, got, c.optOut)
		}
		if got := isPrefetch(c.h); got != c.prefetch {
			t.Errorf("isPrefetch(%v) = %v; want %v", c.h, got, c.prefetch)
		}
	}
}

// FuzzForwardedFor checks that any X-Forwarded-For gives a valid visitor without panicking,
// and that an untrusted peer's header is never believed.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"198.51.100.1", "1.2.3.4, 10.0.0.1", "garbage", "", ",,,", "[::1]:80", "::ffff:1.2.3.4", "fe80::1%eth0"} {
		f.Add(s)
	}
	trusted, _ := parsePrefixes([]string{"127.0.0.0/8", "10.0.0.0/8"})
	f.Fuzz(func(t *testing.T, xff string) {
		r := &http.Request{RemoteAddr: "127.0.0.1:1", Header: http.Header{"X-Forwarded-For": {xff}}}
		v := visitorAddr(r, trusted)
		if !v.IsValid() || v.Is4In6() || v.Zone() != "" {
			t.Fatalf("visitorAddr(X-Forwarded-For %q) = %v; want a valid address without zone", xff, v)
		}
		if v.Is6() && v != netip.PrefixFrom(v, 64).Masked().Addr() {
			t.Fatalf("visitorAddr(X-Forwarded-For %q) = %v; want a /64", xff, v)
		}
		r.RemoteAddr = "203.0.113.1:1"
		if got := visitorAddr(r, trusted); got != netip.MustParseAddr("203.0.113.1") {
			t.Fatalf("untrusted peer with X-Forwarded-For %q = %v; want the peer", xff, got)
		}
	})
}

// TestServerErrorLogHasNoAddress checks that net/http's own log lines lose the client's address.
func TestServerErrorLogHasNoAddress(t *testing.T) {
	var buf syncBuffer
	l := serverErrorLog(slog.New(slog.NewTextHandler(&buf, nil)))
	l.Printf("http: panic serving 203.0.113.8:4711: boom")
	l.Printf("http: TLS handshake error from [2001:db8::7]:443: EOF")
	l.Printf("http: panic serving [::ffff:198.51.100.2]:1: x")
	for _, ip := range []string{"203.0.113.8", "2001:db8::7", "198.51.100.2"} {
		if strings.Contains(buf.String(), ip) {
			t.Errorf("server error log holds %s:\n%s", ip, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "boom") {
		t.Errorf("server error log lost the message:\n%s", buf.String())
	}
}

// TestBotMatchers checks that each hand-written matcher stands for a pattern of
// isbotPatterns and decides as its regexp on the test User-Agents, their prefixes and
// suffixes, and versions spliced in.
func TestBotMatchers(t *testing.T) {
	uas := append(readUserAgents(t, "crawlers.txt"), readUserAgents(t, "browsers.txt")...)
	uas = append(uas, "", ",", "/", "a/", "a/v", "a/V1", "a/1.", "a/1.,", "a/1.2.3,x", "a b(c):%?/1",
		"a/1.12345678901", "a/1.2.12345678901", "a/1.2.1234567890,", "a/1.2.3.4.5.6", "a/v1.2;", "a/vv1", "é/1")
	for js, f := range botMatchers {
		i := slices.IndexFunc(isbotPatterns, func(p botPattern) bool { return p.js == js })
		if i < 0 {
			t.Errorf("botMatchers: %s is not among isbotPatterns", js)
			continue
		}
		re := regexp.MustCompile(isbotPatterns[i].re)
		check := func(ua string) {
			if got, want := f(ua), re.MatchString(ua); got != want {
				t.Errorf("matcher of %s on %q = %v; its regexp says %v", js, ua, got, want)
			}
		}
		for _, ua := range uas {
			for j := range len(ua) + 1 {
				check(ua[:j])
				check(ua[j:])
			}
			for _, v := range []string{"/1.0", "/v12.3.4,", "/1.2.12345678901", ",", "."} {
				for j := 0; j <= len(ua); j += 5 {
					check(ua[:j] + v)
					check(ua[:j] + v + ua[j:])
				}
			}
		}
	}
}
