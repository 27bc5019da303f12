package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
	s, err := newStore(context.Background(), db, db, db, cfg.QueueSize, time.UTC, discardLog())
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
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			h.ServeHTTP(w, req)
			clear(w.h)
		}
	})
}

// BenchmarkCallNewVisitor measures the handler of /call when every call is a new row: each
// comes through a proxy on this machine, as under make bench, with a new X-Forwarded-For.
func BenchmarkCallNewVisitor(b *testing.B) {
	h, srv := newBenchServer(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(32)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		req := httptest.NewRequest("GET", "/call/blog", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("User-Agent", desktopUA)
		addr := make([]byte, 0, 16)
		for pb.Next() {
			i := n.Add(1)
			addr = append(addr[:0], "10."...)
			addr = strconv.AppendInt(addr, i>>16&255, 10)
			addr = append(addr, '.')
			addr = strconv.AppendInt(addr, i>>8&255, 10)
			addr = append(addr, '.')
			addr = strconv.AppendInt(addr, i&255, 10)
			req.Header["X-Forwarded-For"] = []string{string(addr)}
			h.ServeHTTP(w, req)
			clear(w.h)
		}
	})
	b.StopTimer()
	if counted := srv.outcomes[outCounted].Load(); counted < int64(b.N)/2 {
		b.Fatalf("calls counted = %d of %d; want new visitors", counted, b.N)
	}
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

// bigData is a database with 10,000 paths and 10,000,000 calls over two years, of which
// 1,000,000 are calls of "blog", made once per test run for the Big benchmarks.
var bigData struct {
	once    sync.Once
	h       http.Handler
	db      *sql.DB
	rebuild time.Duration // the first build of the rollups from the 10,000,000 calls
	err     error
}

// bigHandler returns the handler of a server on the big database, loading it at the first call.
func bigHandler(b *testing.B) http.Handler {
	b.Helper()
	bigData.once.Do(func() {
		start := time.Now()
		_, db, err := createTestDB()
		if err != nil {
			bigData.err = err
			return
		}
		ctx := context.Background()
		if bigData.err = applySchema(ctx, db); bigData.err != nil {
			return
		}
		for _, q := range []string{
			"INSERT INTO paths (path) VALUES ('blog')",
			"INSERT INTO paths (path) SELECT 'page-' || g FROM generate_series(2, 10000) g",
			"DROP INDEX calls_path_id_timestamp",
			// blog: 1,000,000 calls spread over the last two years.
			`INSERT INTO calls (path_id, timestamp)
			 SELECT 1, now() - (g::float8 / 1000000) * interval '730 days' FROM generate_series(1, 1000000) g`,
			// The other 9,999 paths: 9,000,000 calls, some pages far busier than others.
			`INSERT INTO calls (path_id, timestamp)
			 SELECT 2 + (g::int8 * g) % 9999, now() - ((g::int8 * 7919) % 63072000) * interval '1 second' FROM generate_series(1, 9000000) g`,
			"CREATE INDEX calls_path_id_timestamp ON calls (path_id, timestamp)",
		} {
			if _, bigData.err = db.Exec(q); bigData.err != nil {
				return
			}
		}
		bigData.db = db
		rebuild := time.Now()
		if bigData.err = syncRollups(ctx, db, time.UTC, func() {}, discardLog()); bigData.err != nil {
			return
		}
		bigData.rebuild = time.Since(rebuild)
		if _, bigData.err = db.Exec("VACUUM ANALYZE"); bigData.err != nil {
			return
		}
		cfg := defaultConfig()
		cfg.ResponseFilename, cfg.TrackedBaseURL = "pixel.gif", "http://127.0.0.1:1"
		cfg.DB.Host, cfg.DB.Port, cfg.DB.Username, cfg.DB.Database = "unused", 5432, "unused", "unused"
		if bigData.err = cfg.validate(); bigData.err != nil {
			return
		}
		s, err := newStore(ctx, db, db, db, cfg.QueueSize, time.UTC, discardLog())
		if err != nil {
			bigData.err = err
			return
		}
		bigData.h = newServer(cfg, s, testImage, discardLog()).routes()
		fmt.Printf("loaded 10,000 paths and 10,000,000 calls in %s\n", time.Since(start).Round(time.Second))
	})
	if bigData.err != nil {
		b.Fatal(bigData.err)
	}
	return bigData.h
}

// benchGet measures GET url on h and fails unless it answers 200.
func benchGet(b *testing.B, url string) {
	h := bigHandler(b)
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
		if rec.Code != 200 {
			b.Fatalf("GET %s = %d %s", url, rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}

// BenchmarkBigPlot is the plot page of a path with 1,000,000 calls over two years.
func BenchmarkBigPlot(b *testing.B) { benchGet(b, "/dashboard/plot/blog") }

// BenchmarkBigPlotDaily is the plot page per day over all of that path's history.
func BenchmarkBigPlotDaily(b *testing.B) { benchGet(b, "/dashboard/plot/blog?range=all&by=day") }

// BenchmarkBigHistoryByDay is /api/history?by=day for the same path.
func BenchmarkBigHistoryByDay(b *testing.B) { benchGet(b, "/api/history/blog?by=day") }

// BenchmarkBigCounts is /api/counts with 10,000 paths and 10,000,000 calls.
func BenchmarkBigCounts(b *testing.B) { benchGet(b, "/api/counts") }

// BenchmarkBigDashboard is the dashboard with 10,000 paths.
func BenchmarkBigDashboard(b *testing.B) { benchGet(b, "/dashboard/") }

// BenchmarkBigTotalByDay is /api/total?by=day: the whole site per day over two years.
func BenchmarkBigTotalByDay(b *testing.B) { benchGet(b, "/api/total?by=day") }

// BenchmarkBigCountsRange is /api/counts?from= 30 days ago: the calls of every page in 30 days.
func BenchmarkBigCountsRange(b *testing.B) {
	benchGet(b, "/api/counts?from="+time.Now().UTC().AddDate(0, 0, -29).Format(time.DateOnly))
}

// BenchmarkBigDashboardRange is the dashboard over the last 30 days, with 10,000 pages.
func BenchmarkBigDashboardRange(b *testing.B) { benchGet(b, "/dashboard/?range=30d") }

// BenchmarkBigDashboardYear is the dashboard over the last year, with 10,000 pages.
func BenchmarkBigDashboardYear(b *testing.B) { benchGet(b, "/dashboard/?range=1y") }

// BenchmarkBigCountsRangeParts is /api/counts from noon 30 days ago to noon yesterday: the
// parts of the two end days are counted from calls, page by page.
func BenchmarkBigCountsRangeParts(b *testing.B) {
	noon := time.Now().UTC().Truncate(24 * time.Hour).Add(12 * time.Hour)
	benchGet(b, "/api/counts?from="+noon.AddDate(0, 0, -30).Format(time.RFC3339)+"&to="+noon.AddDate(0, 0, -1).Format(time.RFC3339))
}

// BenchmarkBigStartCheck is the check of the rollups at a later start of a daemon on the big
// database, after a crash left 500 journal rows (a second of batches under load); it
// reports the first build of the rollups from all calls beside it.
func BenchmarkBigStartCheck(b *testing.B) {
	bigHandler(b)
	db := bigData.db
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		execAll(b, db, `INSERT INTO oxitraffic_writes (daemon, seq, dp, dd, dn, pp, pn, pf, sh, sn)
			SELECT 42, g, '{1}', ARRAY[(extract(epoch FROM now()) / 86400)::int8], '{0}', '{1}', '{0}',
			       ARRAY[(extract(epoch FROM now()) * 1e6)::int8], ARRAY[(extract(epoch FROM now()) / 3600)::int8], '{0}'
			FROM generate_series(1, 500) g`)
		b.StartTimer()
		if err := syncRollups(ctx, db, time.UTC, func() {}, discardLog()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		execAll(b, db, "DELETE FROM oxitraffic_writes")
		b.StartTimer()
	}
	b.ReportMetric(bigData.rebuild.Seconds(), "s-first-build")
}
