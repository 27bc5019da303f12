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

-- Rollups: the number of calls and the first call of each path, and the calls of each path
-- per local day (time_zone, or utc_offset). They are added to about once a second, from the
-- journal below; at start they are rebuilt from calls when they were never made (a
-- database of the original OxiTraffic) or made for another zone.
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

-- Reads of a range of days for every page (the dashboard, /api/counts?from=) scan this
-- index alone; it holds the count, so no row of the table is visited.
CREATE INDEX IF NOT EXISTS daily_calls_day_path ON daily_calls (day, path_id) INCLUDE (count);

-- The calls of the whole site per local hour, kept like the other rollups: the site's
-- totals per hour, day, week and month. An hour is the instant at which it starts, as UTC,
-- so that the hour shown twice on an autumn night is two rows, and hours that start at
-- :30 or :45 past a UTC hour (India, Nepal) are rows too. (Before time zones, it was the
-- local wall clock; a start rebuilds such a table, as rollup_version says.)
CREATE TABLE IF NOT EXISTS site_hourly (
    hour TIMESTAMP PRIMARY KEY,
    count BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS oxitraffic_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The rollup journal: one row per written batch of calls, inserted in the same statement
-- as the calls, holding what the batch adds to the rollups (daily_calls: path ids dp, days
-- since 1970-01-01 dd, counts dn; path_counts: path ids pp, counts pn, first calls pf in
-- microseconds since the epoch; site_hourly: hours since 1970-01-01 on the local clock sh,
-- counts sn, UTC offsets in seconds at the hours' starts so). A flush deletes its daemon's rows and adds what they hold
-- to the rollups in the same statement, so the rows left are what the rollups lack after a
-- crash. The key (a random id of the writing process, a sequence number) lets a batch sent
-- again after a lost answer find out that it was written already; so the rows of another
-- daemon are only marked as rolled, and deleted an hour later.
CREATE TABLE IF NOT EXISTS oxitraffic_writes (
    daemon BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    dp BIGINT[] NOT NULL,
    dd BIGINT[] NOT NULL,
    dn BIGINT[] NOT NULL,
    pp BIGINT[] NOT NULL,
    pn BIGINT[] NOT NULL,
    pf BIGINT[] NOT NULL,
    sh BIGINT[] NOT NULL DEFAULT '{}',
    sn BIGINT[] NOT NULL DEFAULT '{}',
    rolled BOOLEAN NOT NULL DEFAULT false,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (daemon, seq)
);

ALTER TABLE oxitraffic_writes ADD COLUMN IF NOT EXISTS so BIGINT[] NOT NULL DEFAULT '{}';

-- The lines of web server logs that an import (oxitraffic -import) made calls of, so that
-- importing them again adds nothing. key: the first 16 bytes of SHA-256 of the line
-- without its first field (the client address), followed, for the n-th identical such
-- line of one import (n > 1), by a newline and n; run: the import's number; path_id and
-- at: the call the line made, so that an import can be undone. No address, nor anything
-- made from one, is stored.
CREATE SEQUENCE IF NOT EXISTS oxitraffic_import_runs;

CREATE TABLE IF NOT EXISTS oxitraffic_imported (
    key BYTEA PRIMARY KEY,
    run BIGINT NOT NULL,
    path_id INTEGER NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
