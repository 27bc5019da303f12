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
	d.stop(t)
	d.start(t, nil)

	dir, err := filepath.Abs("screenshots")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	for name, url := range map[string]string{"plot.png": d.url + "/dashboard/plot/blog?range=30d", "dashboard.png": d.url + "/dashboard/"} {
		shot := filepath.Join(dir, name)
		os.Remove(shot)
		chromium(t, url, "--hide-scrollbars", "--window-size=900,700", "--screenshot="+shot)
		if info, err := os.Stat(shot); err != nil || info.Size() < 1000 {
			t.Errorf("no screenshot of %s at %s: %v", url, shot, err)
		}
		t.Logf("screenshot of %s: %s", url, shot)
	}
}
