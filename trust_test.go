package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWhatIsNotCounted checks that bots, prefetches and opted-out visitors get the image and no row.
func TestWhatIsNotCounted(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, config string
		header       []string
		want         string
	}{
		{"a crawler", "", []string{"User-Agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, "bot"},
		{"a headless browser", "", []string{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 Safari/537.36"}, "bot"},
		{"an empty User-Agent", "", []string{"User-Agent", ""}, "bot"},
		{"a prefetch", "", []string{"Sec-Purpose", "prefetch"}, "prefetch"},
		{"bots counted when ignore_bots is off", "ignore_bots: false\n", []string{"User-Agent", "curl/8.5.0"}, "counted"},
		{"DNT ignored by default", "", []string{"DNT", "1"}, "counted"},
		{"DNT respected", "respect_dnt: true\n", []string{"DNT", "1"}, "dnt"},
		{"GPC respected", "respect_dnt: true\n", []string{"Sec-GPC", "1"}, "dnt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := newTestServer(t, c.config)
			resp := d.call(t, "/blog", "203.0.113.50", c.header...)
			if resp.StatusCode != 200 || resp.Header.Get("X-OxiTraffic") != c.want || resp.Header.Get("Content-Type") != "image/gif" {
				t.Errorf("GET /call/blog = %d %q %q; want 200 %q with the image", resp.StatusCode, resp.Header.Get("X-OxiTraffic"), resp.Header.Get("Content-Type"), c.want)
			}
			wantRows := 0
			if c.want == "counted" {
				wantRows = 1
			}
			if n := d.rows(t, "blog"); n != wantRows {
				t.Errorf("rows = %d; want %d", n, wantRows)
			}
		})
	}
}

// TestIPv6VisitorIsItsSlash64 checks that an IPv6 /64 is one visitor and mapped IPv4 is IPv4.
func TestIPv6VisitorIsItsSlash64(t *testing.T) {
	t.Parallel()
	d := newTestServer(t, "")
	for _, c := range []struct{ xff, want string }{
		{"2001:db8:1:2::1", "counted"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "duplicate"}, // same /64, rotated low bits
		{"2001:db8:1:3::1", "counted"},
		{"::ffff:203.0.113.60", "counted"},
		{"203.0.113.60", "duplicate"}, // IPv4-mapped IPv6 is IPv4
	} {
		if resp := d.call(t, "/blog", c.xff); resp.Header.Get("X-OxiTraffic") != c.want {
			t.Errorf("call as %s = %q; want %q", c.xff, resp.Header.Get("X-OxiTraffic"), c.want)
		}
	}
}

// TestOversizedHeadersAreRefused checks that oversized headers get 431.
func TestOversizedHeadersAreRefused(t *testing.T) {
	d := startDaemon(t, "")
	req, _ := http.NewRequest(http.MethodGet, d.url+"/call/blog", nil)
	req.Header.Set("User-Agent", desktopUA)
	req.Header.Set("X-Junk", strings.Repeat("x", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header = %d; want 431", resp.StatusCode)
	}
}

// TestAbuseLeavesNoAddressBehind checks the data folder and the database dump for addresses after abuse.
func TestAbuseLeavesNoAddressBehind(t *testing.T) {
	d := startDaemon(t, "respect_dnt: true\n")
	ips := []string{"203.0.113.91", "2001:db8:abcd:ef01::91", "198.51.100.92"}
	for _, ip := range ips {
		d.call(t, "/blog", ip)
		d.call(t, "/blog", ip, "DNT", "1")
		d.call(t, "/blog", ip, "User-Agent", "Googlebot")
		d.call(t, "/away", ip)
		d.call(t, "/%2e%2e", ip)
		for i := range 25 {
			d.call(t, fmt.Sprintf("/x%d", i), ip)
		}
	}
	d.stop(t)
	dump := pgDump(t, d.dbCfg)
	var files []string
	filepath.Walk(d.dataDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	for _, ip := range append(ips, "2001:db8:abcd:ef01") {
		if strings.Contains(dump, ip) {
			t.Errorf("pg_dump = holds %s; want no visitor address", ip)
		}
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if strings.Contains(string(b), ip) {
				t.Errorf("%s = holds %s; want no visitor address", filepath.Base(f), ip)
			}
		}
	}
}

// TestNoIPAddressIsStoredOrLogged checks the database dump, the log file and stderr for visitors' addresses.
func TestNoIPAddressIsStoredOrLogged(t *testing.T) {
	d := startDaemon(t, "")
	ips := []string{"203.0.113.77", "2001:db8:1234:5678::1"}
	for _, ip := range ips {
		d.call(t, "/blog", ip)
		d.call(t, "/nope", ip)
		d.call(t, "/%ff", ip)
	}
	d.stop(t)
	dump := pgDump(t, d.dbCfg)
	logs, err := os.ReadFile(filepath.Join(d.dataDir, logFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logs, []byte("path=blog")) {
		t.Errorf("%s = %q; want the call of blog, path=blog", logFileName, logs)
	}
	for _, ip := range append(ips, "2001:db8:1234:5678") {
		if strings.Contains(dump, ip) {
			t.Errorf("pg_dump = holds %s; want no visitor address", ip)
		}
		if bytes.Contains(logs, []byte(ip)) {
			t.Errorf("%s = holds %s; want no visitor address", logFileName, ip)
		}
		if strings.Contains(d.stderr.String(), ip) {
			t.Errorf("stderr = holds %s; want no visitor address", ip)
		}
	}
}
