package main

import (
	"net/http"
	"testing"
)

// TestWhatCounts checks each rule of what a /call is through the running daemon: the
// X-OxiTraffic value, the image, the rows and /metrics.
func TestWhatCounts(t *testing.T) {
	d := startDaemon(t, `ignore_visitors: ["203.0.113.0/24", "2001:db8:1::/48", "198.51.100.200"]
allowed_referrers: ["friend.example", "https://Mirror.Example:8443/x"]
`)
	site := "http://" + d.site.Listener.Addr().String()
	for i, c := range []struct {
		name    string
		method  string
		visitor string
		header  []string
		want    string
	}{
		{"HEAD", http.MethodHead, "198.51.100.1", nil, "head"},
		{"HEAD of a path the site does not serve", http.MethodHead, "198.51.100.1", nil, "head"},
		{"navigation to the image", "", "198.51.100.2", []string{"Sec-Fetch-Dest", "document"}, "not-image"},
		{"a fetch", "", "198.51.100.3", []string{"Sec-Fetch-Dest", "empty"}, "not-image"},
		{"another site embeds it", "", "198.51.100.4", []string{"Referer", "https://elsewhere.example/page"}, "other-site"},
		{"a Referer that names no host", "", "198.51.100.5", []string{"Referer", "garbage"}, "other-site"},
		{"the owner's network", "", "203.0.113.9", nil, "ignored"},
		{"the owner's address", "", "198.51.100.200", nil, "ignored"},
		{"the owner's IPv6 network", "", "2001:db8:1:2::5", nil, "ignored"},
		{"an image load from the site", "", "198.51.100.10", []string{"Sec-Fetch-Dest", "image", "Referer", site + "/blog"}, "counted"},
		{"no Referer, no Sec-Fetch-Dest", "", "198.51.100.11", nil, "counted"},
		{"an allowed referrer", "", "198.51.100.12", []string{"Referer", "https://friend.example/"}, "counted"},
		{"an allowed referrer given as a URL, with www.", "", "198.51.100.13", []string{"Referer", "https://www.mirror.example/a"}, "counted"},
		{"the site's host in capitals, with a port", "", "198.51.100.14", []string{"Referer", "HTTP://127.0.0.1:1/"}, "counted"},
		{"an IPv6 visitor outside the owner's network", "", "2001:db8:2::5", nil, "counted"},
	} {
		path := "/blog"
		if i == 1 {
			path = "/nowhere"
		}
		req, err := http.NewRequest(c.method, d.url+"/call"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("User-Agent", desktopUA)
		req.Header.Set("X-Forwarded-For", c.visitor)
		for j := 0; j+1 < len(c.header); j += 2 {
			req.Header.Set(c.header[j], c.header[j+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-OxiTraffic"); resp.StatusCode != 200 || got != c.want || resp.Header.Get("Content-Type") != "image/gif" {
			t.Errorf("%s: %d %q (%s); want 200 %q and the image", c.name, resp.StatusCode, got, resp.Header.Get("Content-Type"), c.want)
		}
	}
	if n := d.rows(t, "blog"); n != 6 {
		t.Errorf("rows of blog = %d; want 6, one per counted call", n)
	}
	if n := d.pathRows(t); n != 1 {
		t.Errorf("path rows = %d; want 1: a HEAD checks no path", n)
	}
	_, body := get(t, d.url+"/metrics")
	m := parseMetrics(t, body)
	for outcome, want := range map[string]float64{"head": 2, "not-image": 2, "other-site": 2, "ignored": 3, "counted": 6} {
		if got := m[`oxitraffic_calls_total{outcome="`+outcome+`"}`]; got != want {
			t.Errorf("oxitraffic_calls_total{outcome=%q} = %v; want %v", outcome, got, want)
		}
	}
}

// TestRefererHost checks the host taken from a Referer.
func TestRefererHost(t *testing.T) {
	for _, c := range []struct {
		ref, host string
		ok        bool
	}{
		{"https://example.com/a/b", "example.com", true},
		{"https://example.com", "example.com", true},
		{"http://user:pw@Example.com:8080/x?y#z", "Example.com", true},
		{"https://example.com.:443/", "example.com", true},
		{"http://[2001:db8::1]:80/", "2001:db8::1", true},
		{"android-app://com.example.app/", "com.example.app", true},
		{"/relative", "", false},
		{"https://", "", false},
		{"https://[::1", "", false},
		{"garbage", "", false},
	} {
		if host, ok := refererHost(c.ref); host != c.host || ok != c.ok {
			t.Errorf("refererHost(%q) = %q, %v; want %q, %v", c.ref, host, ok, c.host, c.ok)
		}
	}
}
