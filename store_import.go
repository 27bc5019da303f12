package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lib/pq"
)

// The store's side of an import of access logs (oxitraffic -import). The calls of each
// log file are written in one transaction: they are copied in batches into a staging
// table, and each batch goes into calls with one INSERT ... SELECT, together with the
// keys of its lines (oxitraffic_imported, which makes a second import of the same lines
// add nothing) and a journal row built as the writer builds its own. When the file's
// transaction commits, the import flushes its journal rows into the rollups with the
// writer's statement, as one more daemon with an id of its own, so that a running daemon
// sees the raised rollup generation and takes the new counts.

// importBatch is how many staged lines go into calls with one statement.
const importBatch = 50_000

// importStore writes the calls of one import run.
type importStore struct {
	db   *sql.DB
	run  int64          // the run's number, stored with the keys of its lines
	loc  *time.Location // the owner's zone, for the days and hours of the journal rows
	seq  int64          // the last sequence number given to a journal row
	roll rollups
}

// newImportStore numbers a new import run and prepares the flush of the rollups on db.
func newImportStore(ctx context.Context, db *sql.DB, loc *time.Location, log *slog.Logger) (*importStore, error) {
	s := &importStore{db: db, loc: loc}
	if err := db.QueryRowContext(ctx, "SELECT nextval('oxitraffic_import_runs')").Scan(&s.run); err != nil {
		return nil, fmt.Errorf("number the import: %w", err)
	}
	flush, err := db.PrepareContext(ctx, rollJournalSQL)
	if err != nil {
		return nil, fmt.Errorf("prepare rollups: %w", err)
	}
	k0, _ := randomKey()
	s.roll = rollups{stmt: flush, log: log, daemon: int64(k0 >> 1), loc: loc, rolled: time.Now()}
	return s, nil
}

// close releases the prepared flush.
func (s *importStore) close() error {
	return s.roll.stmt.Close()
}

// importFile is the open transaction of one log file: nothing of it is visible until
// commit, and rollback leaves nothing of it.
type importFile struct {
	s      *importStore
	tx     *sql.Tx
	copy   *sql.Stmt // the COPY into import_stage, nil between batches
	staged int       // lines in import_stage
	lo, hi [16]byte  // the least and the greatest key staged
	added  int64     // calls written so far
	taken  int64     // staged lines whose key an earlier import holds
	seqs   []int64   // this file's journal rows
}

// importLockID serializes imports, and removals of imports, between processes.
const importLockID = 7_215_032_713

// begin opens the transaction of one log file, with its staging table.
func (s *importStore) begin(ctx context.Context) (*importFile, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin import: %w", err)
	}
	f := &importFile{s: s, tx: tx}
	// Imports take turns, file by file, so that a batch's check of its keys holds.
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", importLockID); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("import: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE TEMP TABLE import_stage (key bytea NOT NULL, path text NOT NULL, at int8 NOT NULL) ON COMMIT DROP"); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("create import staging table: %w", err)
	}
	return f, nil
}

// stage adds one call to the file's transaction: its line's key, its path and its time in
// microseconds since the epoch. A full batch is written at once.
func (f *importFile) stage(ctx context.Context, key []byte, path string, micros int64) error {
	if f.copy == nil {
		st, err := f.tx.PrepareContext(ctx, "COPY import_stage (key, path, at) FROM STDIN")
		if err != nil {
			return fmt.Errorf("copy into import staging table: %w", err)
		}
		f.copy = st
	}
	if _, err := f.copy.ExecContext(ctx, key, path, micros); err != nil {
		return fmt.Errorf("copy into import staging table: %w", err)
	}
	if k := [16]byte(key); f.staged == 0 {
		f.lo, f.hi = k, k
	} else if bytes.Compare(k[:], f.lo[:]) < 0 {
		f.lo = k
	} else if bytes.Compare(k[:], f.hi[:]) > 0 {
		f.hi = k
	}
	f.staged++
	if f.staged >= importBatch {
		return f.settle(ctx)
	}
	return nil
}

// importPathsSQL adds the staged paths that are new, without a check against the site:
// its own log says that it answered 200.
const importPathsSQL = `
	INSERT INTO paths (path)
	SELECT DISTINCT s.path FROM import_stage s
	WHERE NOT EXISTS (SELECT 1 FROM paths p WHERE p.path = s.path)
	ON CONFLICT (path) DO NOTHING`

// importCallsSQL writes the staged lines whose keys are new as calls, remembers their keys
// under the run $1, and returns each call's path id and time in microseconds. %s is
// importSkipTaken, or nothing when no key of the batch can be there already.
const importCallsSQL = `
	WITH added AS (
		INSERT INTO oxitraffic_imported (key, run, path_id, at)
		SELECT s.key, $1, p.id, 'epoch'::timestamptz + s.at * interval '1 microsecond'
		FROM import_stage s JOIN paths p ON p.path = s.path
		%s
		RETURNING path_id, at
	), calls AS (
		INSERT INTO calls (path_id, timestamp) SELECT path_id, at FROM added
	)
	SELECT path_id, (extract(epoch FROM at) * 1000000)::int8 FROM added`

// importJournalSQL inserts the journal row of a batch (see insertCallsSQL's mark).
const importJournalSQL = `
	INSERT INTO oxitraffic_writes (daemon, seq, dp, dd, dn, pp, pn, pf, sh, sn)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

// settle writes the staged batch: new paths, then the calls of new keys and their
// journal row, and empties the staging table.
func (f *importFile) settle(ctx context.Context) error {
	if f.copy != nil {
		_, err := f.copy.ExecContext(ctx)
		f.copy.Close()
		f.copy = nil
		if err != nil {
			return fmt.Errorf("copy into import staging table: %w", err)
		}
	}
	if f.staged == 0 {
		return nil
	}
	if _, err := f.tx.ExecContext(ctx, importPathsSQL); err != nil {
		return fmt.Errorf("add imported paths: %w", err)
	}
	calls, err := f.insertCalls(ctx)
	if err != nil {
		return err
	}
	f.added += int64(len(calls))
	f.taken += int64(f.staged - len(calls))
	if len(calls) > 0 {
		var d rollupDelta
		d.addCalls(calls, f.s.loc)
		a := d.arrays()
		f.s.seq++
		_, err := f.tx.ExecContext(ctx, importJournalSQL, f.s.roll.daemon, f.s.seq,
			pq.Array(a.dp), pq.Array(a.dd), pq.Array(a.dn), pq.Array(a.pp), pq.Array(a.pn), pq.Array(a.pf),
			pq.Array(a.sh), pq.Array(a.sn))
		if err != nil {
			return fmt.Errorf("journal imported calls: %w", err)
		}
		f.seqs = append(f.seqs, f.s.seq)
	}
	if _, err := f.tx.ExecContext(ctx, "TRUNCATE import_stage"); err != nil {
		return fmt.Errorf("empty import staging table: %w", err)
	}
	f.staged = 0
	return nil
}

// importSkipTaken makes importCallsSQL skip the lines that an import took before.
const importSkipTaken = "ON CONFLICT (key) DO NOTHING"

// insertCalls writes the staged batch with importCallsSQL and returns the calls it wrote.
// When no key of an earlier import lies between the batch's least and greatest (a log
// imported for the first time), the keys go in without the check of each, which is a
// third of PostgreSQL's work; a line repeated within the batch then falls back to it.
func (f *importFile) insertCalls(ctx context.Context) ([]pendingCall, error) {
	var taken bool
	err := f.tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM oxitraffic_imported WHERE key BETWEEN $1 AND $2)",
		f.lo[:], f.hi[:]).Scan(&taken)
	if err != nil {
		return nil, fmt.Errorf("check imported keys: %w", err)
	}
	if !taken {
		if _, err := f.tx.ExecContext(ctx, "SAVEPOINT fresh"); err != nil {
			return nil, fmt.Errorf("insert imported calls: %w", err)
		}
		calls, err := f.queryCalls(ctx, fmt.Sprintf(importCallsSQL, ""))
		if err == nil {
			if _, err := f.tx.ExecContext(ctx, "RELEASE SAVEPOINT fresh"); err != nil {
				return nil, fmt.Errorf("insert imported calls: %w", err)
			}
			return calls, nil
		}
		if pqErr := (*pq.Error)(nil); !errors.As(err, &pqErr) || pqErr.Code != "23505" { // unique_violation
			return nil, err
		}
		if _, err := f.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT fresh"); err != nil {
			return nil, fmt.Errorf("insert imported calls: %w", err)
		}
	}
	return f.queryCalls(ctx, fmt.Sprintf(importCallsSQL, importSkipTaken))
}

// queryCalls runs one form of importCallsSQL and returns the calls it wrote.
func (f *importFile) queryCalls(ctx context.Context, query string) ([]pendingCall, error) {
	rows, err := f.tx.QueryContext(ctx, query, f.s.run)
	if err != nil {
		return nil, fmt.Errorf("insert imported calls: %w", err)
	}
	defer rows.Close()
	calls := make([]pendingCall, 0, f.staged)
	for rows.Next() {
		var c pendingCall
		if err := rows.Scan(&c.pathID, &c.micros); err != nil {
			return nil, fmt.Errorf("insert imported calls: %w", err)
		}
		calls = append(calls, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("insert imported calls: %w", err)
	}
	return calls, nil
}

// commit writes the last batch, commits the file and adds its calls to the rollups. It
// returns how many calls the file added and how many of its lines were imported before.
func (f *importFile) commit(ctx context.Context) (added, taken int64, err error) {
	if err := f.settle(ctx); err != nil {
		f.rollback()
		return 0, 0, err
	}
	if err := f.tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("commit import: %w", err)
	}
	if len(f.seqs) > 0 {
		f.s.roll.pending = f.seqs
		if _, _, err := f.s.roll.flush(ctx); err != nil {
			// The calls are written: their journal rows wait, and any running daemon
			// adds them orphanAge later, or the next start does.
			f.s.roll.log.Warn("imported calls not yet in the rollups: a running daemon adds them within seconds, or the next start", "err", err)
		}
	}
	return f.added, f.taken, nil
}

// rollback drops everything the file's transaction wrote.
func (f *importFile) rollback() {
	if f.copy != nil {
		f.copy.Close()
		f.copy = nil
	}
	f.tx.Rollback()
}

// unimportSQL deletes the calls that import $1 made, one row of calls for each of its
// lines (rows of one path and time are alike, so which of them goes makes no difference),
// and the keys of its lines, and, when it deleted calls, has the rollups rebuilt (see
// syncRollups). It returns how many calls and keys it deleted.
const unimportSQL = `
	WITH made AS (
		SELECT path_id, at, count(*) AS n FROM oxitraffic_imported WHERE run = $1 GROUP BY 1, 2
	), doomed AS (
		SELECT c.ctid FROM (
			SELECT ctid, path_id, timestamp, row_number() OVER (PARTITION BY path_id, timestamp) AS k
			FROM calls WHERE (path_id, timestamp) IN (SELECT path_id, at FROM made)
		) c JOIN made m ON m.path_id = c.path_id AND m.at = c.timestamp
		WHERE c.k <= m.n
	), gone AS (
		DELETE FROM calls WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1
	), keys AS (
		DELETE FROM oxitraffic_imported WHERE run = $1 RETURNING 1
	), meta AS (
		DELETE FROM oxitraffic_meta WHERE key = 'rollup_version' AND EXISTS (SELECT 1 FROM gone)
	)
	SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM keys)`

// unimport removes what import run made and rebuilds the rollups at the zone loc, which
// every running daemon then takes. It returns how many calls it removed.
func unimport(ctx context.Context, db *sql.DB, run int64, loc *time.Location, log *slog.Logger) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("remove import %d: %w", run, err)
	}
	defer tx.Rollback()
	var n, keys int64
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", importLockID); err != nil {
		return 0, fmt.Errorf("remove import %d: lock: %w", run, err)
	}
	if err := tx.QueryRowContext(ctx, unimportSQL, run).Scan(&n, &keys); err != nil {
		return 0, fmt.Errorf("remove import %d: %w", run, err)
	}
	if keys == 0 {
		return 0, fmt.Errorf("remove import %d: no line of such an import is stored", run)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("remove import %d: %w", run, err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := syncRollups(ctx, db, loc, func() {}, log); err != nil {
		return n, fmt.Errorf("remove import %d: the calls are removed; the next start rebuilds the rollups: %w", run, err)
	}
	return n, nil
}
