package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
)

// addCallsAt stores calls of path at the given RFC 3339 times directly, and rebuilds the
// rollups at loc as a start would.
func (d *daemon) addCallsAt(t *testing.T, loc *time.Location, path string, times ...string) {
	t.Helper()
	execAll(t, d.db, "INSERT INTO paths (path) VALUES ('"+path+"') ON CONFLICT DO NOTHING")
	for _, ts := range times {
		if _, err := d.db.Exec("INSERT INTO calls (path_id, timestamp) SELECT id, $2 FROM paths WHERE path = $1", path, ts); err != nil {
			t.Fatal(err)
		}
	}
	if status, _ := get(t, d.url+"/dashboard/"); status != 200 {
		t.Fatalf("GET /dashboard/ = %d", status)
	}
	execAll(t, d.db, "DELETE FROM oxitraffic_meta WHERE key = 'rollup_version'")
	if err := syncRollups(context.Background(), d.db, loc, func() {}, discardLog()); err != nil {
		t.Fatal(err)
	}
}

// berlinCalls are calls of blog around both changes of the clocks in Berlin in 2026, and
// one in winter; about has one call on the spring day.
var berlinCalls = []string{
	"2026-01-15T10:00:00Z", // 11:00+01:00
	"2026-03-28T23:30:00Z", // March 29, 00:30+01:00
	"2026-03-29T00:59:00Z", // 01:59+01:00, the last minute before the change
	"2026-03-29T01:00:00Z", // 03:00+02:00, the first after it
	"2026-03-29T21:59:59Z", // 23:59:59+02:00
	"2026-03-29T22:00:00Z", // March 30, 00:00+02:00
	"2026-10-24T21:59:00Z", // October 24, 23:59+02:00
	"2026-10-24T22:00:00Z", // October 25, 00:00+02:00
	"2026-10-25T00:30:00Z", // 02:30+02:00
	"2026-10-25T01:30:00Z", // 02:30+01:00, the same time on the clock an hour later
}

// berlinDaemon starts a daemon at Europe/Berlin holding berlinCalls, written around it.
func berlinDaemon(t *testing.T) *daemon {
	t.Helper()
	d := startDaemon(t, "time_zone: Europe/Berlin\n")
	berlin := zone(t, "Europe/Berlin")
	d.addCallsAt(t, berlin, "blog", berlinCalls...)
	d.addCallsAt(t, berlin, "about", "2026-03-29T10:00:00Z")
	d.stop(t)
	d.start(t, nil)
	return d
}

// bucketsOf requests buckets and returns them.
func bucketsOf(t *testing.T, url string) []bucketJSON {
	t.Helper()
	var got []bucketJSON
	getJSON(t, url, &got)
	return got
}

// nonEmpty returns the buckets with calls.
func nonEmpty(b []bucketJSON) []bucketJSON {
	return slices.DeleteFunc(slices.Clone(b), func(x bucketJSON) bool { return x.Count == 0 })
}

// TestZoneBerlinThroughTheChanges checks raw times, day, hour and month buckets, and the
// counts and totals of local days through both changes of the clocks in Berlin.
func TestZoneBerlinThroughTheChanges(t *testing.T) {
	d := berlinDaemon(t)
	var times []string
	getJSON(t, d.url+"/api/history/blog", &times)
	want := []string{
		"2026-01-15T11:00:00+01:00", "2026-03-29T00:30:00+01:00", "2026-03-29T01:59:00+01:00", "2026-03-29T03:00:00+02:00",
		"2026-03-29T23:59:59+02:00", "2026-03-30T00:00:00+02:00", "2026-10-24T23:59:00+02:00", "2026-10-25T00:00:00+02:00",
		"2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00",
	}
	if !slices.Equal(times, want) {
		t.Errorf("GET /api/history/blog = %v; want %v", times, want)
	}
	type b = bucketJSON
	for _, c := range []struct {
		url  string
		want []b
	}{
		{"/api/history/blog?by=day&from=2026-03-28&to=2026-03-30", []b{{"2026-03-28T00:00:00+01:00", 0}, {"2026-03-29T00:00:00+01:00", 4}, {"2026-03-30T00:00:00+02:00", 1}}},
		{"/api/history/blog?by=day&from=2026-10-24&to=2026-10-26", []b{{"2026-10-24T00:00:00+02:00", 1}, {"2026-10-25T00:00:00+02:00", 3}, {"2026-10-26T00:00:00+01:00", 0}}},
		{"/api/history/blog?by=month&from=2026-03-01&to=2026-04-30", []b{{"2026-03-01T00:00:00+01:00", 5}, {"2026-04-01T00:00:00+02:00", 0}}},
		{"/api/history/blog?by=week&from=2026-03-23&to=2026-04-05", []b{{"2026-03-23T00:00:00+01:00", 4}, {"2026-03-30T00:00:00+02:00", 1}}},
		{"/api/total?by=day&from=2026-03-29&to=2026-03-30", []b{{"2026-03-29T00:00:00+01:00", 5}, {"2026-03-30T00:00:00+02:00", 1}}},
		{"/api/total?by=month&from=2026-10-01&to=2026-11-30", []b{{"2026-10-01T00:00:00+02:00", 4}, {"2026-11-01T00:00:00+01:00", 0}}},
	} {
		if got := bucketsOf(t, d.url+c.url); !slices.Equal(got, c.want) {
			t.Errorf("GET %s = %v; want %v", c.url, got, c.want)
		}
	}
	// A spring day has 23 hours, an autumn day 25; the hour after 01:00 is 03:00, and 02:00 is shown twice.
	for _, c := range []struct {
		url   string
		hours int
		calls []b
	}{
		{"/api/total?by=hour&from=2026-03-29&to=2026-03-29", 23, []b{
			{"2026-03-29T00:00:00+01:00", 1}, {"2026-03-29T01:00:00+01:00", 1}, {"2026-03-29T03:00:00+02:00", 1},
			{"2026-03-29T12:00:00+02:00", 1}, {"2026-03-29T23:00:00+02:00", 1}}},
		{"/api/history/blog?by=hour&from=2026-03-29&to=2026-03-29", 23, []b{
			{"2026-03-29T00:00:00+01:00", 1}, {"2026-03-29T01:00:00+01:00", 1}, {"2026-03-29T03:00:00+02:00", 1}, {"2026-03-29T23:00:00+02:00", 1}}},
		{"/api/total?by=hour&from=2026-10-25&to=2026-10-25", 25, []b{
			{"2026-10-25T00:00:00+02:00", 1}, {"2026-10-25T02:00:00+02:00", 1}, {"2026-10-25T02:00:00+01:00", 1}}},
		{"/api/history/blog?by=hour&from=2026-10-25&to=2026-10-25", 25, []b{
			{"2026-10-25T00:00:00+02:00", 1}, {"2026-10-25T02:00:00+02:00", 1}, {"2026-10-25T02:00:00+01:00", 1}}},
	} {
		got := bucketsOf(t, d.url+c.url)
		if len(got) != c.hours || !slices.Equal(nonEmpty(got), c.calls) {
			t.Errorf("GET %s = %d buckets with calls %v; want %d with %v", c.url, len(got), nonEmpty(got), c.hours, c.calls)
		}
	}
	for _, c := range []struct{ url, want string }{
		{"/api/total?from=2026-03-29&to=2026-03-29", "5\n"},
		{"/api/total?from=2026-10-25&to=2026-10-25", "3\n"},
		{"/api/total?from=2026-10-25T02:00:00%2B01:00&to=2026-10-25", "1\n"},
		{"/api/counts?from=2026-03-29&to=2026-03-29", `[{"path":"blog","count":4},{"path":"about","count":1}]` + "\n"},
		{"/api/counts?from=2026-10-24&to=2026-10-24", `[{"path":"blog","count":1}]` + "\n"},
		{"/api/counts?from=2026-10-25T02:15:00%2B02:00&to=2026-10-25T02:45:00%2B01:00", `[{"path":"blog","count":2}]` + "\n"},
	} {
		if status, body := get(t, d.url+c.url); status != 200 || body != c.want {
			t.Errorf("GET %s = %d %q; want 200 %q", c.url, status, body, c.want)
		}
	}
	if _, body := get(t, d.url+"/dashboard/plot/blog"); !strings.Contains(body, "Times at Europe/Berlin") {
		t.Errorf("the plot page does not say that its times are at Europe/Berlin")
	}
}

// TestZoneCompareCounts checks /api/counts?compare=previous, as JSON and CSV, through a
// change of the clocks, and its refusals.
func TestZoneCompareCounts(t *testing.T) {
	d := berlinDaemon(t)
	for _, c := range []struct{ query, want string }{
		// The 25-hour day beside the 24-hour day before it.
		{"?from=2026-10-25&to=2026-10-25&compare=previous", `[{"path":"blog","count":3,"previous":1}]`},
		// The week from Monday March 30 beside the week with the 23-hour day.
		{"?from=2026-03-30&to=2026-04-05&compare=previous", `[{"path":"blog","count":1,"previous":4}]`},
		{"?from=2026-03-29&to=2026-03-29&compare=previous", `[{"path":"blog","count":4,"previous":0},{"path":"about","count":1,"previous":0}]`},
		// Not whole days: the same duration before.
		{"?from=2026-03-29T03:00:00%2B02:00&to=2026-03-29T04:00:00%2B02:00&compare=previous", `[{"path":"blog","count":1,"previous":1}]`},
		{"?from=2025-01-01&to=2025-12-31&compare=previous", `[]`},
	} {
		if status, body := get(t, d.url+"/api/counts"+c.query); status != 200 || body != c.want+"\n" {
			t.Errorf("GET /api/counts%s = %d %s; want 200 %s", c.query, status, body, c.want)
		}
	}
	recs := getCSV(t, d.url+"/api/counts?from=2026-10-25&to=2026-10-25&compare=previous&format=csv", "oxitraffic-counts-2026-10-25")
	if want := [][]string{{"path", "count", "previous"}, {"blog", "3", "1"}}; len(recs) != 2 || !slices.Equal(recs[0], want[0]) || !slices.Equal(recs[1], want[1]) {
		t.Errorf("GET /api/counts?...&compare=previous&format=csv = %q; want %q", recs, want)
	}
	for _, c := range []struct{ query, reason string }{
		{"?from=2026-10-25&to=2026-10-25&compare=next", `compare="next"`},
		{"?from=2026-10-25&compare=previous", "needs both from= and to="},
		{"?compare=previous", "needs both from= and to="},
	} {
		if status, body := get(t, d.url+"/api/counts"+c.query); status != 400 || !strings.Contains(body, c.reason) {
			t.Errorf("GET /api/counts%s = %d %q; want 400 saying %q", c.query, status, body, c.reason)
		}
	}
}

// TestZoneChangeAtStart checks that a start with another zone than the rollups were made
// for rebuilds them: the same calls fall on other days and hours.
func TestZoneChangeAtStart(t *testing.T) {
	d := startDaemon(t, "")
	d.addCalls(t, "blog", 0, "2026-03-28T23:30:00Z", "2026-03-29T10:00:00Z")
	url := "/api/history/blog?by=day&from=2026-03-28&to=2026-03-29"
	if got, want := bucketsOf(t, d.url+url), []bucketJSON{{"2026-03-28T00:00:00Z", 1}, {"2026-03-29T00:00:00Z", 1}}; !slices.Equal(got, want) {
		t.Errorf("at UTC, GET %s = %v; want %v", url, got, want)
	}
	d.stop(t)
	d.dataDir = writeDataDir(t, d.dbCfg, d.site.URL, "time_zone: Asia/Kathmandu\n")
	d.start(t, nil)
	if got, want := bucketsOf(t, d.url+url), []bucketJSON{{"2026-03-28T00:00:00+05:45", 0}, {"2026-03-29T00:00:00+05:45", 2}}; !slices.Equal(got, want) {
		t.Errorf("at Asia/Kathmandu, GET %s = %v; want %v", url, got, want)
	}
	if got, want := nonEmpty(bucketsOf(t, d.url+"/api/total?by=hour&from=2026-03-29&to=2026-03-29")), []bucketJSON{
		{"2026-03-29T05:00:00+05:45", 1}, {"2026-03-29T15:00:00+05:45", 1}}; !slices.Equal(got, want) {
		t.Errorf("at Asia/Kathmandu, the site's hours with calls on March 29 = %v; want %v", got, want)
	}
	var hours []string
	rows, err := d.db.Query("SELECT hour::text FROM site_hourly ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		rows.Scan(&h)
		hours = append(hours, h)
	}
	rows.Close()
	if want := []string{"2026-03-28 23:15:00", "2026-03-29 09:15:00"}; !slices.Equal(hours, want) {
		t.Errorf("site_hourly hours = %v; want the UTC instants at which the local hours start, %v", hours, want)
	}
	var stored string
	d.db.QueryRow("SELECT value FROM oxitraffic_meta WHERE key = 'rollup_zone'").Scan(&stored)
	if stored != "Asia/Kathmandu" {
		t.Errorf("rollup_zone = %q; want Asia/Kathmandu", stored)
	}
}

// startFails runs OxiTraffic on dataDir and returns the error that ends its start.
func startFails(t *testing.T, dataDir string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, func(k string) string {
			if k == "OXITRAFFIC_DATA_DIR" {
				return dataDir
			}
			return ""
		}, &stdout, &stderr)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatalf("run on %s did not end within 30s: %s", dataDir, stdout.String())
		return nil
	}
}

// TestZoneTwoDaemons checks that a daemon whose zone differs from that of a daemon running
// on the same database refuses to start, naming the keys and the zone in use, while one
// with the same zone starts; and that once the first stopped, the other zone starts and
// its rollups are rebuilt.
func TestZoneTwoDaemons(t *testing.T) {
	a := startDaemon(t, "time_zone: Europe/Berlin\n")
	a.addCallsAt(t, zone(t, "Europe/Berlin"), "blog", "2026-03-28T23:30:00Z")
	for _, extra := range []string{"time_zone: America/New_York\n", "utc_offset:\n  hours: 2\n"} {
		err := startFails(t, writeDataDir(t, a.dbCfg, a.site.URL, extra))
		if err == nil || !strings.Contains(err.Error(), "time_zone") || !strings.Contains(err.Error(), "utc_offset") || !strings.Contains(err.Error(), "Europe/Berlin") {
			t.Errorf("start with %q beside a daemon at Europe/Berlin = %v; want a refusal naming time_zone, utc_offset and Europe/Berlin", extra, err)
		}
	}
	b := &daemon{dbCfg: a.dbCfg, db: a.db, site: a.site, dataDir: writeDataDir(t, a.dbCfg, a.site.URL, "time_zone: Europe/Berlin\n")}
	b.start(t, nil)
	url := "/api/history/blog?by=day&from=2026-03-29&to=2026-03-29"
	for _, d := range []*daemon{a, b} {
		if got := bucketsOf(t, d.url+url); !slices.Equal(got, []bucketJSON{{"2026-03-29T00:00:00+01:00", 1}}) {
			t.Errorf("GET %s on a daemon at Europe/Berlin = %v; want the call on March 29", url, got)
		}
	}
	a.stop(t)
	b.stop(t)
	c := &daemon{dbCfg: a.dbCfg, db: a.db, site: a.site, dataDir: writeDataDir(t, a.dbCfg, a.site.URL, "time_zone: America/New_York\n")}
	c.start(t, nil)
	url = "/api/history/blog?by=day&from=2026-03-28&to=2026-03-28"
	if got := bucketsOf(t, c.url+url); !slices.Equal(got, []bucketJSON{{"2026-03-28T00:00:00-04:00", 1}}) {
		t.Errorf("GET %s at America/New_York once the others stopped = %v; want the call on March 28", url, got)
	}
}

// TestRollupGenerationRisesOnlyWhenSomethingIsRolled checks that flushes of two idle
// daemons on one database leave the rollup generation as it is, and that a flush that adds
// a batch raises it by one.
func TestRollupGenerationRisesOnlyWhenSomethingIsRolled(t *testing.T) {
	_, db := newTestDB(t)
	ctx := context.Background()
	if err := applySchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := syncRollups(ctx, db, time.UTC, func() {}, discardLog()); err != nil {
		t.Fatal(err)
	}
	execAll(t, db, "INSERT INTO paths (path) VALUES ('blog')")
	var daemons [2]*rollups
	for i := range daemons {
		stmt, err := db.PrepareContext(ctx, rollJournalSQL)
		if err != nil {
			t.Fatal(err)
		}
		defer stmt.Close()
		daemons[i] = &rollups{stmt: stmt, log: discardLog(), daemon: int64(i + 1), loc: time.UTC}
	}
	start, err := readGeneration(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for i, r := range daemons {
			gen, _, err := r.flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if gen != start || r.raised != 0 {
				t.Errorf("idle flush %d of daemon %d: generation %d, raised %d; want %d, 0", round, i+1, gen, r.raised, start)
			}
		}
	}
	// Daemon 1 writes a batch, with its journal row, and adds it.
	var d rollupDelta
	d.addCalls([]pendingCall{{pathID: 1, micros: time.Now().UnixMicro()}}, time.UTC)
	a := d.arrays()
	if _, err := db.Exec(insertCallsSQL, pqArrays([]int64{1}, []int64{time.Now().UnixMicro()}, 1, 1, a)...); err != nil {
		t.Fatal(err)
	}
	daemons[0].written(1)
	if gen, _, err := daemons[0].flush(ctx); err != nil || gen != start+1 || daemons[0].raised != 1 {
		t.Errorf("flush of a batch = generation %d, raised %d, %v; want %d, 1", gen, daemons[0].raised, err, start+1)
	}
	if gen, _, err := daemons[1].flush(ctx); err != nil || gen != start+1 || daemons[1].raised != 0 {
		t.Errorf("idle flush of the other daemon after it = generation %d, raised %d, %v; want %d, 0", gen, daemons[1].raised, err, start+1)
	}
	var total int64
	db.QueryRow("SELECT count FROM path_counts").Scan(&total)
	if total != 1 {
		t.Errorf("path_counts after the batch = %d; want 1", total)
	}
}

// pqArrays returns the arguments of insertCallsSQL for a batch.
func pqArrays(ids, micros []int64, daemon, seq int64, a deltaArrays) []any {
	args := []any{pq.Array(ids), pq.Array(micros), daemon, seq}
	for _, v := range [][]int64{a.dp, a.dd, a.dn, a.pp, a.pn, a.pf, a.sh, a.sn, a.so} {
		args = append(args, pq.Array(v))
	}
	return args
}

// TestZoneConfig checks time_zone in the file and the environment, and its refusals.
func TestZoneConfig(t *testing.T) {
	db := DBConfig{Host: "/tmp", Port: 5432, Username: "u", Password: "p", Database: "d", SSLMode: "disable"}
	for _, c := range []struct {
		extra string
		env   map[string]string
		zone  string // the zone of a start that goes on, or
		err   []string
	}{
		{extra: "time_zone: Europe/Berlin\n", zone: "Europe/Berlin"},
		{env: map[string]string{"OXITRAFFIC_TIME_ZONE": "Asia/Kolkata"}, zone: "Asia/Kolkata"},
		{extra: "utc_offset:\n  hours: 5\n  minutes: 45\n", zone: "UTC+05:45"},
		{extra: "", zone: "UTC+00:00"},
		{extra: "time_zone: Europe/Berlin\nutc_offset:\n  hours: 1\n", err: []string{"time_zone", "utc_offset"}},
		{extra: "utc_offset:\n  hours: 1\n", env: map[string]string{"OXITRAFFIC_TIME_ZONE": "Europe/Berlin"}, err: []string{"time_zone", "utc_offset"}},
		{extra: "time_zone: Europe/Atlantis\n", err: []string{"time_zone", "Europe/Atlantis"}},
		{extra: "time_zone: Local\n", err: []string{"time_zone"}},
		{extra: "time_zone: ../../etc/passwd\n", err: []string{"time_zone"}},
	} {
		dir := writeDataDir(t, db, "http://example.com", c.extra)
		cfg, err := loadConfig(dir, func(k string) string { return c.env[k] })
		if c.err == nil {
			if err != nil || zoneName(cfg.parsed.loc) != c.zone {
				t.Errorf("config %q %v: zone %v, %v; want %s", c.extra, c.env, cfg.parsed.loc, err, c.zone)
			}
			continue
		}
		for _, w := range c.err {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("config %q %v = %v; want an error naming %s", c.extra, c.env, err, w)
			}
		}
	}
}

// TestZoneRollupsAddUpLikeARebuild checks that the rollups the writer adds up at a zone are
// those that a rebuild from calls makes at it, around the changes of the clocks.
func TestZoneRollupsAddUpLikeARebuild(t *testing.T) {
	times := append(slices.Clone(berlinCalls),
		"2026-03-08T06:59:59Z", "2026-03-08T07:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", // New York
		"2026-04-04T14:45:00Z", "2026-04-04T15:10:00Z", "2026-04-04T15:40:00Z", // Lord Howe, back by half an hour
		"2026-05-01T18:14:59Z", "2026-05-01T18:15:00Z", "2026-05-02T04:29:59Z", "2026-05-02T04:30:00Z")
	for _, name := range []string{"Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe"} {
		loc := zone(t, name)
		_, db := newTestDB(t)
		ctx := context.Background()
		if err := applySchema(ctx, db); err != nil {
			t.Fatal(err)
		}
		if err := syncRollups(ctx, db, loc, func() {}, discardLog()); err != nil {
			t.Fatal(err)
		}
		execAll(t, db, "INSERT INTO paths (path) VALUES ('blog'), ('about')")
		s, err := newStore(ctx, db, db, db, 100, loc, discardLog())
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range times {
			if !s.reserveCall() {
				t.Fatal("queue full")
			}
			<-s.recordCall(int32(1+i%2), at(t, v)).done
		}
		if err := s.w.requestFlush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.w.close(ctx); err != nil {
			t.Fatal(err)
		}
		written := rollupRows(t, db)
		execAll(t, db, "DELETE FROM oxitraffic_meta WHERE key = 'rollup_version'")
		if err := syncRollups(ctx, db, loc, func() {}, discardLog()); err != nil {
			t.Fatal(err)
		}
		if rebuilt := rollupRows(t, db); written != rebuilt {
			t.Errorf("%s: rollups written by the writer:\n%s\nrebuilt from calls:\n%s", name, written, rebuilt)
		}
	}
}
