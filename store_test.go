package main

import (
	"context"
	"testing"
)

// TestDatabaseOfTheOriginalKeepsItsHistory checks that a database of the original OxiTraffic is merged and keeps its counts.
func TestDatabaseOfTheOriginalKeepsItsHistory(t *testing.T) {
	dbCfg, db := newTestDB(t)
	// The original's tables, without a unique path, with one path in two rows.
	for _, q := range []string{
		"CREATE TABLE paths (id SERIAL PRIMARY KEY, path TEXT NOT NULL)",
		"CREATE TABLE calls (id BIGSERIAL PRIMARY KEY, path_id INTEGER NOT NULL REFERENCES paths (id), timestamp TIMESTAMPTZ NOT NULL)",
		"INSERT INTO paths (path) VALUES ('blog'), ('about'), ('blog')",
		"INSERT INTO calls (path_id, timestamp) VALUES (1, '2024-01-01T10:00:00Z'), (2, '2024-01-02T10:00:00Z'), (3, '2024-01-03T10:00:00Z'), (3, '2024-01-04T23:30:00Z')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	st := newSite(t)
	d := &daemon{dbCfg: dbCfg, db: db, site: st, dataDir: writeDataDir(t, dbCfg, st.URL, "")}
	d.start(t, nil)

	if status, body := get(t, d.url+"/api/counts"); body != `[{"path":"blog","count":3},{"path":"about","count":1}]`+"\n" {
		t.Errorf("GET /api/counts on the original's database = %d %s; want blog 3, about 1", status, body)
	}
	var rows int
	db.QueryRow("SELECT count(*) FROM paths WHERE path = 'blog'").Scan(&rows)
	if rows != 1 {
		t.Errorf("paths rows for blog after the merge = %d; want 1", rows)
	}
	d.call(t, "/blog", "203.0.113.1")
	if _, body := get(t, d.url+"/api/count/blog"); body != "4\n" {
		t.Errorf("GET /api/count/blog after a new call = %q; want 4", body)
	}
	if status, _ := get(t, d.url+"/api/history/blog"); status != 200 {
		t.Errorf("GET /api/history/blog = %d; want 200", status)
	}

	// Applying the schema again changes nothing.
	if err := applySchema(context.Background(), db); err != nil {
		t.Fatalf("applying the schema a second time: %v", err)
	}
	d.stop(t)
	d.start(t, nil)
	if _, body := get(t, d.url+"/api/count/blog"); body != "4\n" {
		t.Errorf("after a restart GET /api/count/blog = %q; want 4", body)
	}
}

// TestRollupsFollowTheOffset checks that the daily rollup is rebuilt when the UTC offset changes.
func TestRollupsFollowTheOffset(t *testing.T) {
	_, db := newTestDB(t)
	if err := applySchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	db.Exec("INSERT INTO paths (path) VALUES ('blog')")
	db.Exec("INSERT INTO calls (path_id, timestamp) VALUES (1, '2024-01-04T23:30:00Z')")
	for _, c := range []struct {
		offset int
		day    string
	}{{0, "2024-01-04"}, {3600, "2024-01-05"}, {-3600, "2024-01-04"}} {
		if err := syncRollups(context.Background(), db, c.offset, discardLog()); err != nil {
			t.Fatal(err)
		}
		var day string
		db.QueryRow("SELECT day::text FROM daily_calls").Scan(&day)
		if day != c.day {
			t.Errorf("day of 2024-01-04T23:30Z at offset %ds = %s; want %s", c.offset, day, c.day)
		}
	}
}
