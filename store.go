package main

import (
	"cmp"
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// schema is applied at every start.
//
//go:embed schema.sql
var schema string

// errNotFound is returned for a path that has no row in paths.
var errNotFound = errors.New("not found")

// errBusy is returned when every database read slot stays taken for readWait.
var errBusy = errors.New("too many reads at once; try again in a moment")

// Bounds of the reads of the API and the pages, so that no client, however slow or
// numerous, can take the database from the writer or hold it at its own pace.
const (
	maxReads    = 4                      // database reads that run at once
	clientReads = 2                      // of which one client may hold
	readWait    = 250 * time.Millisecond // how long a read waits for a slot before errBusy
	readTimeout = 10 * time.Second       // how long one request may read
)

// schemaLockID serializes schema application between daemons sharing a database.
const schemaLockID = 7_215_032_711

// applySchema runs schema.sql in one transaction, under a lock so that two starts do not race.
func applySchema(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockID); err != nil {
		return fmt.Errorf("apply schema: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	return nil
}

// store is the one door to PostgreSQL for the handlers and run: it records calls through
// the writer, reads through a bounded pool, and keeps in memory every known path with its
// number of calls, so that /call and /api/counts need no query. The numbers are raised
// after each COMMIT, before the calls are acknowledged.
type store struct {
	db    *sql.DB // the read pool
	w     *writer
	loc   *time.Location // the owner's zone, at which days and buckets start
	reads chan struct{}
	// clients are the read slots of each client, within reads.
	clients readClients
	// release, when set, ends what the store holds until it is closed (the zone lock).
	release func()

	mu     sync.RWMutex
	paths  map[string]int32
	totals map[int32]int64
}

// newStore loads the known paths through startDB, and starts the call writer on its own
// pool writeDB; reads use readDB. loc is the owner's zone.
func newStore(ctx context.Context, startDB, readDB, writeDB *sql.DB, queueSize int, loc *time.Location, log *slog.Logger) (*store, error) {
	s := &store{db: readDB, paths: map[string]int32{}, totals: map[int32]int64{}, loc: loc, reads: make(chan struct{}, maxReads)}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var err error
	if s.paths, s.totals, err = readCounts(ctx, startDB); err != nil {
		return nil, err
	}
	if s.w, err = newWriter(ctx, writeDB, queueSize, loc, s.committed, log); err != nil {
		return nil, err
	}
	return s, nil
}

// reserveCall takes a place in the write queue for one call, or reports false when the
// queue is full. The place is used by recordCall or given back by releaseCall.
func (s *store) reserveCall() bool { return s.w.reserve() }

// dropCall counts a call that is lost because the queue was full.
func (s *store) dropCall() { s.w.drop() }

// releaseCall gives back a place that reserveCall took and that is not used.
func (s *store) releaseCall() { s.w.release() }

// recordCall queues a call of a known path in a reserved place and returns its batch,
// whose done is closed after the first attempt to write it.
func (s *store) recordCall(id int32, at time.Time) *batch { return s.w.enqueue(id, at) }

// healthy reports whether the writer's last contact with PostgreSQL succeeded.
func (s *store) healthy() bool { return s.w.healthy.Load() }

// checkHealth reports whether the writer reaches PostgreSQL, checking on its own
// connection when it has not heard from PostgreSQL for healthFresh.
func (s *store) checkHealth(ctx context.Context) bool { return s.w.health(ctx) }

// queueLen returns how many calls wait to be written.
func (s *store) queueLen() int { return s.w.queueLen() }

// writerStuckFor returns how long the writer's current database operation has run, or 0.
func (s *store) writerStuckFor() time.Duration { return s.w.stuckFor() }

// close writes every queued call, until ctx ends, stops the writer, and closes the pools.
func (s *store) close(ctx context.Context) error {
	err := s.w.close(ctx)
	if s.release != nil {
		// Every call is in the rollups now: another zone may rebuild them.
		s.release()
	}
	// Closing a connection that PostgreSQL already dropped fails; nothing is lost by it.
	s.w.db.Close()
	s.db.Close()
	return err
}

// releaseOnClose has close call release once every call is written and flushed.
func (s *store) releaseOnClose(release func()) { s.release = release }

// storeStats are the store's numbers that /metrics shows.
type storeStats struct {
	written, lost        int64
	queued               int
	batchSize, writeTime *histogram
}

// stats returns the numbers that /metrics shows.
func (s *store) stats() storeStats {
	return storeStats{
		written: s.w.written.Load(), lost: s.w.droppedCalls(), queued: s.w.queueLen(),
		batchSize: &s.w.batchSize, writeTime: &s.w.latency,
	}
}

// knownPath returns the id of a path from the cache, without touching the database.
func (s *store) knownPath(path string) (int32, bool) {
	s.mu.RLock()
	id, ok := s.paths[path]
	s.mu.RUnlock()
	return id, ok
}

// remember puts a path that the cache does not hold, and its number of calls, into it.
func (s *store) remember(path string, id int32, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A path known already has a count that is at least as current: the writer's, or the
	// rollups' that the writer took after another daemon's flush.
	if _, ok := s.paths[path]; ok {
		return
	}
	s.paths[path] = id
	s.totals[id] = n
}

// committed adds the calls of a written batch to the numbers in memory.
func (s *store) committed(calls []pendingCall) {
	s.mu.Lock()
	for _, c := range calls {
		s.totals[int32(c.pathID)]++
	}
	s.mu.Unlock()
}

// addPath stores a verified path, or finds the row that is already there, and returns its id.
func (s *store) addPath(ctx context.Context, path string) (int32, error) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var id int32
	err := s.db.QueryRowContext(ctx, `
		WITH ins AS (INSERT INTO paths (path) VALUES ($1) ON CONFLICT (path) DO NOTHING RETURNING id)
		SELECT id FROM ins UNION ALL SELECT id FROM paths WHERE path = $1 LIMIT 1`, path).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert path: %w", err)
	}
	s.remember(path, id, 0)
	return id, nil
}

// pathCount is one path with its number of calls.
type pathCount struct {
	Path  string `json:"path"`
	Count int64  `json:"count"`
}

// counts returns every path with its number of calls, highest first, then by path.
func (s *store) counts() []pathCount {
	s.mu.RLock()
	out := make([]pathCount, 0, len(s.paths))
	for p, id := range s.paths {
		out = append(out, pathCount{p, s.totals[id]})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b pathCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out
}

// count returns the number of calls of a path from memory, or errNotFound: memory holds
// every path this daemon stored or loaded at start, and those other daemons stored, after
// their next flush, so a path that is not there costs no read.
func (s *store) count(ctx context.Context, path string) (int64, error) {
	id, ok := s.knownPath(path)
	if !ok {
		return 0, errNotFound
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.totals[id], nil
}

// reader is one request's use of the database: a read slot, a deadline, and at most one
// flush of the rollups. It must be closed; it holds no connection between its queries.
type reader struct {
	s       *store
	ctx     context.Context
	cancel  context.CancelFunc
	flushed bool
	own     chan struct{} // the client's slots, when the request named its client
	client  netip.Addr
}

// read takes a read slot for a request, waiting at most readWait, and bounds the request's
// reads by readTimeout; errBusy when no slot was free. A request whose context names its
// client (withReadClient) waits first for one of that client's clientReads slots, so that
// one client cannot take every slot from the others.
func (s *store) read(ctx context.Context) (*reader, error) {
	t := time.NewTimer(readWait)
	defer t.Stop()
	r := &reader{s: s}
	c, named := ctx.Value(readClientKey{}).(netip.Addr)
	if named {
		own := s.clients.take(c)
		if err := takeSlot(ctx, own, t.C); err != nil {
			s.clients.give(c)
			return nil, err
		}
		r.own, r.client = own, c
	}
	if err := takeSlot(ctx, s.reads, t.C); err != nil {
		r.giveOwn()
		return nil, err
	}
	r.ctx, r.cancel = context.WithTimeout(ctx, readTimeout)
	return r, nil
}

// takeSlot takes a place in slots, or fails with errBusy once timeout fires, or with ctx's error.
func takeSlot(ctx context.Context, slots chan struct{}, timeout <-chan time.Time) error {
	select {
	case slots <- struct{}{}:
		return nil
	case <-timeout:
		return errBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

// giveOwn gives back the client's slot, when the request named its client.
func (r *reader) giveOwn() {
	if r.own != nil {
		<-r.own
		r.s.clients.give(r.client)
	}
}

// close gives back the read slot.
func (r *reader) close() {
	r.cancel()
	<-r.s.reads
	r.giveOwn()
}

// readClientKey is the context key of the client whose request reads.
type readClientKey struct{}

// withReadClient returns ctx naming the client (its address, or its /64) whose reads it makes.
func withReadClient(ctx context.Context, client netip.Addr) context.Context {
	return context.WithValue(ctx, readClientKey{}, client)
}

// readClients are the read slots of the clients that read now, each clientReads deep; a
// client's entry goes when its last request is done. The address lives only meanwhile.
type readClients struct {
	mu sync.Mutex
	m  map[netip.Addr]*clientSlots
}

// clientSlots are one client's read slots and how many of its requests use them.
type clientSlots struct {
	slots chan struct{}
	users int
}

// take returns the client's slots, which give must later release.
func (rc *readClients) take(c netip.Addr) chan struct{} {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.m == nil {
		rc.m = map[netip.Addr]*clientSlots{}
	}
	cs := rc.m[c]
	if cs == nil {
		cs = &clientSlots{slots: make(chan struct{}, clientReads)}
		rc.m[c] = cs
	}
	cs.users++
	return cs.slots
}

// give is called once for each take when the client's request is done with its slots.
func (rc *readClients) give(c netip.Addr) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if cs := rc.m[c]; cs != nil {
		if cs.users--; cs.users == 0 {
			delete(rc.m, c)
		}
	}
}

// fresh has every acknowledged call added to the rollups, once per reader.
func (r *reader) fresh() error {
	if r.flushed {
		return nil
	}
	if err := r.s.w.requestFlush(r.ctx); err != nil {
		return fmt.Errorf("flush rollups: %w", err)
	}
	r.flushed = true
	return nil
}

// pathID returns the id of a path, or errNotFound.
func (r *reader) pathID(path string) (int32, error) {
	if id, ok := r.s.knownPath(path); ok {
		return id, nil
	}
	var id int32
	var n int64
	err := r.s.db.QueryRowContext(r.ctx, `
		SELECT p.id, coalesce(c.count, 0) FROM paths p LEFT JOIN path_counts c ON c.path_id = p.id
		WHERE p.path = $1`, path).Scan(&id, &n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("select path: %w", err)
	}
	r.s.remember(path, id, n)
	return id, nil
}

// timeRange bounds a history; a zero end is open.
type timeRange struct {
	from, to time.Time
}

// nullTime turns the zero time into SQL NULL.
func nullTime(t time.Time) sql.NullTime {
	return sql.NullTime{Time: t, Valid: !t.IsZero()}
}

// historyCursor is where a page of a history starts: at the calls made at micros, after
// the first skip of them (calls can share a microsecond).
type historyCursor struct {
	micros int64
	skip   int
}

// historyPage is one page of a path's call times, oldest first; next is set when more follow.
type historyPage struct {
	times []time.Time
	next  *historyCursor
}

// history returns at most limit call times of a path within the range, oldest first,
// starting at the cursor when it is not nil.
func (r *reader) history(id int32, tr timeRange, after *historyCursor, limit int) (historyPage, error) {
	from := nullTime(tr.from)
	skip := 0
	if after != nil {
		from = sql.NullTime{Time: time.UnixMicro(after.micros), Valid: true}
		if !tr.from.IsZero() && tr.from.After(from.Time) {
			from.Time = tr.from
		} else {
			skip = after.skip
		}
	}
	rows, err := r.s.db.QueryContext(r.ctx, `
		SELECT timestamp FROM calls
		WHERE path_id = $1 AND ($2::timestamptz IS NULL OR timestamp >= $2) AND ($3::timestamptz IS NULL OR timestamp < $3)
		ORDER BY timestamp LIMIT $4`, id, from, nullTime(tr.to), limit+skip+1)
	if err != nil {
		return historyPage{}, fmt.Errorf("select history: %w", err)
	}
	defer rows.Close()
	times := make([]time.Time, 0, min(limit+1, 4096))
	for i := 0; rows.Next(); i++ {
		var t time.Time
		if err := rows.Scan(&t); err != nil {
			return historyPage{}, fmt.Errorf("select history: %w", err)
		}
		if i >= skip {
			times = append(times, t)
		}
	}
	if err := rows.Err(); err != nil {
		return historyPage{}, fmt.Errorf("select history: %w", err)
	}
	var page historyPage
	if len(times) > limit {
		times = times[:limit]
		last := times[limit-1].UnixMicro()
		// Calls at the last page's last microsecond, counting those skipped to get here.
		n := 0
		for i := len(times) - 1; i >= 0 && times[i].UnixMicro() == last; i-- {
			n++
		}
		if after != nil && last == after.micros && n == len(times) {
			n += skip
		}
		page.next = &historyCursor{micros: last, skip: n}
	}
	page.times = times
	return page, nil
}

// bucket is the number of calls in one interval starting at Start.
type bucket struct {
	Start time.Time
	Count int64
}

// countBefore returns how many calls of path were made before the local day that starts at day.
func (r *reader) countBefore(id int32, day time.Time) (int64, error) {
	loc := r.s.loc
	if err := r.fresh(); err != nil {
		return 0, err
	}
	var n int64
	err := r.s.db.QueryRowContext(r.ctx, "SELECT coalesce(sum(count), 0)::int8 FROM daily_calls WHERE path_id = $1 AND day < $2::date",
		id, day.In(loc).Format(time.DateOnly)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("select count before: %w", err)
	}
	return n, nil
}

// pathStats returns the number of calls of a path and the time of its first call.
func (r *reader) pathStats(id int32) (int64, time.Time, error) {
	if err := r.fresh(); err != nil {
		return 0, time.Time{}, err
	}
	var n int64
	var first time.Time
	err := r.s.db.QueryRowContext(r.ctx, "SELECT count, first_call FROM path_counts WHERE path_id = $1", id).Scan(&n, &first)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("select path stats: %w", err)
	}
	return n, first, nil
}

// firstCall returns the time of the first call of all, and false when there is none.
func (r *reader) firstCall() (time.Time, bool, error) {
	if err := r.fresh(); err != nil {
		return time.Time{}, false, err
	}
	var t sql.NullTime
	if err := r.s.db.QueryRowContext(r.ctx, "SELECT min(first_call) FROM path_counts").Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("select first call: %w", err)
	}
	return t.Time, t.Valid, nil
}
