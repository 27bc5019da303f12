//go:build browser

package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// chromium runs headless Chromium as a desktop browser on url with the given extra flags.
func chromium(t *testing.T, url string, flags ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make chromium installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--user-agent=" + desktopUA,
	}, flags...)
	out, err := exec.CommandContext(ctx, bin, append(args, url)...).Output()
	if err != nil {
		t.Fatalf("chromium %s: %v", url, err)
	}
	return out
}

// TestBrowser opens a page of a website with the counter in headless Chromium, sees the
// count go up, and saves a screenshot of the plot page in screenshots/.
func TestBrowser(t *testing.T) {
	var daemonURL string
	blog := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/badges" {
			// The badge beside the counter, on a light and on a dark page.
			fmt.Fprintf(w, `<!doctype html><title>badges</title><body style="margin:0">`+
				`<p style="background:#fff;margin:0;padding:20px">%[2]s</p><p style="background:#0d1117;margin:0;padding:20px">%[2]s</p>`,
				daemonURL, fmt.Sprintf(`<img src="%[1]s/badge/blog" alt="visits"> <img src="%[1]s/badge/blog/post-1" alt="visits">`, daemonURL))
			return
		}
		if r.URL.Path != "/blog" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `<!doctype html><title>blog</title><h1>Blog</h1><a href="%[1]s/dashboard/plot/blog"><img src="%[1]s/call/blog" alt="counter"></a>`, daemonURL)
	}))
	defer blog.Close()
	dbCfg, db := newTestDB(t)
	d := &daemon{dbCfg: dbCfg, db: db, dataDir: writeDataDir(t, dbCfg, blog.URL, "")}
	d.start(t, nil)
	daemonURL = d.url

	chromium(t, blog.URL+"/blog", "--dump-dom")
	if status, body := get(t, d.url+"/api/count/blog"); status != 200 || body != "1\n" {
		t.Fatalf("after Chromium opened the blog page, GET /api/count/blog = %d %q; want 200 \"1\\n\"", status, body)
	}
	// A reload by the same visitor is not a new call.
	chromium(t, blog.URL+"/blog", "--dump-dom")
	if _, body := get(t, d.url+"/api/count/blog"); body != "1\n" {
		t.Errorf("after a second visit, GET /api/count/blog = %q; want 1", body)
	}

	// A month of history, so that the screenshot shows bars and a rising total.
	var times []string
	now := time.Now()
	for i := range 600 {
		times = append(times, now.Add(-time.Duration(i*i%(30*24*60))*time.Minute).UTC().Format(time.RFC3339))
	}
	d.addCalls(t, "blog", 0, times...)
	// More pages, busier and quieter, over two years, so that the list has sparklines.
	execAll(t, d.db,
		"INSERT INTO paths (path) SELECT 'blog/post-' || g FROM generate_series(1, 12) g ON CONFLICT DO NOTHING",
		`INSERT INTO calls (path_id, timestamp)
		 SELECT p.id, now() - ((g * 7919) % (730 * 24 * 60)) * interval '1 minute' * (1 + (p.id % 3))
		 FROM paths p, generate_series(1, 4000) g WHERE p.path LIKE 'blog/post-%' AND g % (p.id % 7 + 1) = 0`)
	d.addCalls(t, "blog", 0)
	d.stop(t)
	d.start(t, nil)
	daemonURL = d.url

	dir, err := filepath.Abs("screenshots")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	desktop, phone := "--window-size=1100,1400", "--window-size=390,1600"
	dark := []string{"--force-dark-mode", "--blink-settings=preferredColorScheme=0"}
	for _, shot := range []struct {
		name, url string
		flags     []string
	}{
		{"plot.png", d.url + "/dashboard/plot/blog?range=30d", []string{"--window-size=900,700"}},
		{"dashboard.png", d.url + "/dashboard/?range=30d", []string{desktop}},
		{"dashboard-dark.png", d.url + "/dashboard/?range=30d", append([]string{desktop}, dark...)},
		{"dashboard-phone.png", d.url + "/dashboard/?range=all", []string{phone}},
		{"dashboard-phone-dark.png", d.url + "/dashboard/?range=7d", append([]string{phone}, dark...)},
		{"badge.png", blog.URL + "/badges", []string{"--window-size=420,200"}},
	} {
		file := filepath.Join(dir, shot.name)
		os.Remove(file)
		chromium(t, shot.url, append([]string{"--hide-scrollbars", "--screenshot=" + file}, shot.flags...)...)
		if info, err := os.Stat(file); err != nil || info.Size() < 1000 {
			t.Errorf("no screenshot of %s at %s: %v", shot.url, file, err)
		}
		t.Logf("screenshot of %s: %s", shot.url, file)
	}
}
