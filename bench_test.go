package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// newBenchServer returns the handler of a server on a fresh database whose path blog is known.
func newBenchServer(b *testing.B) (http.Handler, *server) {
	dbCfg, db := newTestDB(b)
	st := newSite(b)
	dir := writeDataDir(b, dbCfg, st.URL, "")
	cfg, err := loadConfig(dir, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	if err := applySchema(context.Background(), db); err != nil {
		b.Fatal(err)
	}
	s, err := newStore(context.Background(), db, cfg.QueueSize, 0, discardLog())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.w.close(context.Background()) })
	srv := newServer(cfg, s, testImage, discardLog())
	h := srv.routes()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/call/blog", nil)
	req.Header.Set("User-Agent", desktopUA)
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Fatalf("first call = %d", rec.Code)
	}
	return h, srv
}

// BenchmarkCallDuplicate measures the handler of /call for a pair that was already counted.
func BenchmarkCallDuplicate(b *testing.B) {
	h, _ := newBenchServer(b)
	req := httptest.NewRequest("GET", "/call/blog", nil)
	req.Header.Set("User-Agent", desktopUA)
	req.Header.Set("Accept", "image/avif,image/webp,*/*")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			h.ServeHTTP(w, req)
			clear(w.h)
		}
	})
}

// BenchmarkCallNewVisitor measures the handler of /call when every call is a new row.
func BenchmarkCallNewVisitor(b *testing.B) {
	h, _ := newBenchServer(b)
	b.ReportAllocs()
	b.SetParallelism(32)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			i := n.Add(1)
			req := httptest.NewRequest("GET", "/call/blog", nil)
			req.Header.Set("User-Agent", desktopUA)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
			h.ServeHTTP(w, req)
			clear(w.h)
		}
	})
}

// discardWriter is a ResponseWriter that keeps the headers and drops the body.
type discardWriter struct {
	h http.Header
}

// Header returns the answer's headers.
func (w *discardWriter) Header() http.Header { return w.h }

// Write drops p.
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// WriteHeader drops the status.
func (w *discardWriter) WriteHeader(int) {}
