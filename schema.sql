-- OxiTraffic's schema. It is applied at every start, so every statement is idempotent.
-- The tables and columns are those of the original OxiTraffic, so its databases keep working.

CREATE TABLE IF NOT EXISTS paths (
    id SERIAL PRIMARY KEY,
    path TEXT NOT NULL
);

-- calls.path_id is not declared a foreign key: OxiTraffic never deletes a path, and the
-- check of every inserted row would take about 40% of the time of writing a batch.
CREATE TABLE IF NOT EXISTS calls (
    path_id INTEGER NOT NULL,
    timestamp TIMESTAMPTZ NOT NULL
);

-- Older databases may hold one path in several rows: move their calls to the oldest row
-- and drop the others, so that paths.path can be unique.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM paths GROUP BY path HAVING count(*) > 1) THEN
        UPDATE calls c SET path_id = d.keep
        FROM (SELECT id, min(id) OVER (PARTITION BY path) AS keep FROM paths) d
        WHERE c.path_id = d.id AND d.id <> d.keep;
        DELETE FROM paths p USING paths q WHERE p.path = q.path AND p.id > q.id;
    END IF;
END
$$;

CREATE UNIQUE INDEX IF NOT EXISTS paths_path_key ON paths (path);

-- Counts, single counts and histories all read the calls of one path in time order.
CREATE INDEX IF NOT EXISTS calls_path_id_timestamp ON calls (path_id, timestamp);

-- Rollups, written in the same statement as the calls: the number of calls and the first
-- call of each path, and the calls of each path per day at the configured UTC offset.
-- At start they are checked against calls and rebuilt when they disagree (a database of
-- the original OxiTraffic, or a changed offset).
CREATE TABLE IF NOT EXISTS path_counts (
    path_id INTEGER PRIMARY KEY,
    count BIGINT NOT NULL,
    first_call TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS daily_calls (
    path_id INTEGER NOT NULL,
    day DATE NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (path_id, day)
);

CREATE TABLE IF NOT EXISTS oxitraffic_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
