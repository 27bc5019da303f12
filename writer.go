package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// maxBatch bounds how many calls one INSERT writes.
const maxBatch = 2048

// writeTimeout bounds one attempt to write a batch or a flush of the rollups, and how long
// a visitor waits for the COMMIT of their call.
const writeTimeout = 5 * time.Second

// probeEvery is how often an idle writer checks that PostgreSQL answers, so that its
// health is current without traffic.
const probeEvery = 5 * time.Second

// pendingCall is a call that is not written yet.
type pendingCall struct {
	pathID int64
	micros int64 // microseconds since the Unix epoch
}

// batch is a group of calls written in one statement, under one journal sequence number.
// done is closed after the first attempt to write it, or writeTimeout after the batch was
// begun, whichever comes first; ok then says whether the batch was committed.
type batch struct {
	calls  []pendingCall
	seq    int64 // the journal row's sequence number, given at the first attempt
	sealed bool  // taken for writing: no call joins it, so that a retry sends it as it was
	done   chan struct{}
	ok     bool
	once   sync.Once
	timer  *time.Timer
}

// newBatch begins a batch whose requests wait writeTimeout at most.
func newBatch() *batch {
	b := &batch{done: make(chan struct{}), calls: make([]pendingCall, 0, 16)}
	b.timer = time.AfterFunc(writeTimeout, func() { b.finish(false) })
	return b
}

// finish tells the batch's requests whether it was committed, the first time only.
func (b *batch) finish(ok bool) {
	b.once.Do(func() {
		b.ok = ok
		close(b.done)
	})
}

// writer is the one goroutine that writes calls, in groups, on a database connection of its
// own that no reader can take: requests queue their call and wait for the COMMIT of the
// batch that holds it (group commit). A lone call is written at once; under load, calls
// gather while the previous batch commits, so batches grow by themselves. While PostgreSQL
// is down, calls wait in the bounded queue and are written when it is back.
//
// Each batch is written with its journal row, keyed by this process's random id and a
// sequence number, and only when that row is new: when the connection breaks after COMMIT
// was sent, the batch is sent again with the same key and adds nothing if the first
// attempt committed (or waits for it, if it still runs).
//
// A second goroutine, the flusher (flusher.go), adds the journal rows of the committed
// batches to the rollups on a second connection of the pool, so that no visitor's COMMIT
// waits for a flush.
type writer struct {
	db  *sql.DB // two connections: one for the writer, one for the flusher
	log *slog.Logger
	max int

	mu      sync.Mutex
	batches []*batch // the last one takes new calls while it is not full

	queued  atomic.Int64 // calls in batches, plus reserved places
	dropped atomic.Int64

	healthy   atomic.Bool
	busySince atomic.Int64 // UnixNano when the writer's database operation began; 0 when none runs
	flushBusy atomic.Int64 // the same for the flusher's
	wake      chan struct{}
	stop      chan struct{}
	stopped   chan struct{} // closed when the writer has written its queue and stopped
	flushed   chan struct{} // closed when the flusher has made its last flush and stopped
	stopOnce  sync.Once

	// insert is prepared once, so that PostgreSQL parses and plans it only once.
	insert *sql.Stmt
	daemon int64 // the random key of this process's journal rows

	// Owned by the writer goroutine.
	seq        int64          // the last sequence number given to a batch
	lastDB     time.Time      // when PostgreSQL last answered the writer
	healthReqs chan chan bool // health checks that want a current answer

	// The batches committed since the flusher last took them, and the handing over of
	// their calls to the counts in memory; see handOver and takeCounts.
	handMu    sync.Mutex
	fresh     []*batch
	kick      chan struct{}       // tells the flusher that fresh is no longer empty
	committed func([]pendingCall) // told of each written batch before it is acknowledged

	// Owned by the flusher goroutine, but for roll's zone, which is set once and read by the
	// writer too.
	roll       rollups
	rollupReqs chan chan error // reads that need the rollups written first
	waiting    []chan error    // such reads, answered together by the next flush

	// onPeers, when set, is given the counts of the rollups after another daemon on the
	// database added to them; gen is the rollup generation this writer last saw.
	onPeers   atomic.Pointer[func(map[string]int32, map[int32]int64)]
	gen       int64 // -1 until the first flush: the counts loaded at start may miss one
	peerCheck time.Time
	mustTake  bool // the counts of other daemons are to be taken at the next flush

	// Counters read by /metrics.
	written   atomic.Int64
	batchSize histogram
	latency   histogram
}

// insertCallsSQL writes a batch and its journal row in one statement: $1 path ids and $2
// times in microseconds since the epoch, as arrays; $3 the daemon and $4 the sequence
// number; $5 to $13 what the batch adds to the rollups (see deltaArrays). It inserts the
// calls only when the journal row is new.
const insertCallsSQL = `
	WITH mark AS (
		INSERT INTO oxitraffic_writes (daemon, seq, dp, dd, dn, pp, pn, pf, sh, sn, so)
		VALUES ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (daemon, seq) DO NOTHING
		RETURNING 1
	)
	INSERT INTO calls (path_id, timestamp)
	SELECT p, 'epoch'::timestamptz + t * interval '1 microsecond'
	FROM unnest($1::int8[], $2::int8[]) AS u (p, t)
	WHERE EXISTS (SELECT 1 FROM mark)`

// newWriter prepares its statements on db, which must be the writer's own pool of two
// connections, and starts the writer and the flusher goroutines with a queue of at most max
// calls; loc is the owner's zone, at which
// the days of daily_calls start. committed is called with the calls of each batch after its COMMIT, before they
// are acknowledged.
func newWriter(ctx context.Context, db *sql.DB, max int, loc *time.Location, committed func([]pendingCall), log *slog.Logger) (*writer, error) {
	insert, err := db.PrepareContext(ctx, insertCallsSQL)
	if err != nil {
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	flush, err := db.PrepareContext(ctx, rollJournalSQL)
	if err != nil {
		insert.Close()
		return nil, fmt.Errorf("prepare rollups: %w", err)
	}
	var key [8]byte
	rand.Read(key[:])
	daemon := int64(binary.LittleEndian.Uint64(key[:]) >> 1)
	w := &writer{
		db: db, log: log, max: max, insert: insert, daemon: daemon,
		roll:       rollups{stmt: flush, log: log, daemon: daemon, loc: loc, rolled: time.Now()},
		committed:  committed,
		lastDB:     time.Now(),
		rollupReqs: make(chan chan error),
		healthReqs: make(chan chan bool),
		wake:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		stopped:    make(chan struct{}),
		flushed:    make(chan struct{}),
		kick:       make(chan struct{}, 1),
		batchSize:  newHistogram(1, 4, 16, 64, 256, 1024, maxBatch),
		latency:    newHistogram(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
	}
	w.gen = -1
	w.healthy.Store(true)
	go w.loop()
	go w.flushLoop()
	return w, nil
}

// reserve takes a place in the queue for a call, or reports false when the queue is full.
// The place is used by enqueue or given back by release.
func (w *writer) reserve() bool {
	for {
		n := w.queued.Load()
		if n >= int64(w.max) {
			return false
		}
		if w.queued.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// drop counts a call lost because the queue was full.
func (w *writer) drop() {
	w.dropped.Add(1)
}

// release gives back a reserved place that is not used.
func (w *writer) release() {
	w.queued.Add(-1)
}

// enqueue queues a call in a reserved place and returns its batch.
func (w *writer) enqueue(pathID int32, at time.Time) *batch {
	w.mu.Lock()
	var b *batch
	if n := len(w.batches); n > 0 && !w.batches[n-1].sealed && len(w.batches[n-1].calls) < maxBatch {
		b = w.batches[n-1]
	} else {
		b = newBatch()
		w.batches = append(w.batches, b)
	}
	b.calls = append(b.calls, pendingCall{pathID: int64(pathID), micros: at.UnixMicro()})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return b
}

// take removes the oldest batch from the queue, so that no call is added to it while it is written.
func (w *writer) take() *batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.batches) == 0 {
		return nil
	}
	b := w.batches[0]
	w.batches[0] = nil
	w.batches = w.batches[1:]
	b.sealed = true
	return b
}

// putBack returns a batch that could not be written to the front of the queue.
func (w *writer) putBack(b *batch) {
	w.mu.Lock()
	w.batches = append([]*batch{b}, w.batches...)
	w.mu.Unlock()
}

// finished removes a written batch from the queue's count.
func (w *writer) finished(b *batch) {
	w.queued.Add(-int64(len(b.calls)))
}

// queueLen returns how many calls wait to be written.
func (w *writer) queueLen() int {
	return int(w.queued.Load())
}

// droppedCalls returns how many calls were lost to a full queue.
func (w *writer) droppedCalls() int64 {
	return w.dropped.Load()
}

// stuckFor returns how long the longer of the database operations of the writer and the
// flusher that run now has run, or 0.
func (w *writer) stuckFor() time.Duration {
	var d time.Duration
	for _, since := range []int64{w.busySince.Load(), w.flushBusy.Load()} {
		if since != 0 {
			d = max(d, time.Since(time.Unix(0, since)))
		}
	}
	return d
}

// busy marks the start of a database operation of the writer and returns the function that
// marks its end.
func (w *writer) busy() func() { return markBusy(&w.busySince) }

// markBusy stores now in since and returns the function that stores 0 there.
func markBusy(since *atomic.Int64) func() {
	since.Store(time.Now().UnixNano())
	return func() { since.Store(0) }
}

// loop writes batches until stop is closed and the queue is empty, and checks PostgreSQL
// when idle.
func (w *writer) loop() {
	defer close(w.stopped)
	wait := 100 * time.Millisecond
	var logged int64
	for {
		select {
		case req := <-w.healthReqs:
			req <- w.checkHealth()
		default:
		}
		b := w.take()
		if b == nil {
			if w.idle() {
				return
			}
			continue
		}
		if b.seq == 0 {
			w.seq++
			b.seq = w.seq
		}
		start := time.Now()
		err := w.write(b)
		if err == nil {
			w.latency.observe(time.Since(start).Seconds())
			w.batchSize.observe(float64(len(b.calls)))
			w.written.Add(int64(len(b.calls)))
			w.handOver(b)
			w.finished(b)
			w.lastDB = time.Now()
			if !w.healthy.Swap(true) {
				w.log.Info("PostgreSQL is back: writing queued calls", "queued", w.queueLen())
			}
			wait = 100 * time.Millisecond
		} else {
			if w.healthy.Swap(false) {
				w.log.Error("cannot write calls: keeping them in memory until PostgreSQL is back", "err", err)
			}
			w.putBack(b)
		}
		b.finish(err == nil)
		b.timer.Stop()
		if d := w.droppedCalls(); d > logged {
			w.log.Error("queue full: calls lost", "lost", d-logged, "lost_total", d, "queue_size", w.max)
			logged = d
		}
		if err != nil {
			w.pause(wait)
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// handOver gives a committed batch to the flusher and its calls to the counts in memory, in
// one step that no taking of counts (takeCounts) comes between.
func (w *writer) handOver(b *batch) {
	w.handMu.Lock()
	defer w.handMu.Unlock()
	if len(w.fresh) == 0 {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	w.fresh = append(w.fresh, b)
	w.committed(b.calls)
}

// idle waits while no call is queued, checking PostgreSQL every probeEvery. It reports
// true when the writer is to stop.
func (w *writer) idle() bool {
	timer := time.NewTimer(time.Until(w.lastDB.Add(probeEvery)))
	defer timer.Stop()
	select {
	case <-w.wake:
	case <-timer.C:
		w.probe()
	case req := <-w.healthReqs:
		req <- w.checkHealth()
	case <-w.stop:
		if w.queueLen() == 0 {
			return true
		}
		// Only places reserved by requests that are still deciding: wait for them.
		time.Sleep(time.Millisecond)
	}
	return false
}

// probe checks that PostgreSQL answers the writer's connection, and records the result as
// the writer's health.
func (w *writer) probe() {
	defer w.busy()()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	err := w.db.PingContext(ctx)
	w.lastDB = time.Now()
	switch {
	case err == nil && !w.healthy.Swap(true):
		w.log.Info("PostgreSQL answers again")
	case err != nil && w.healthy.Swap(false):
		w.log.Error("PostgreSQL does not answer", "err", err)
	}
}

// pause waits for d after a failed write, still answering health checks.
func (w *writer) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case req := <-w.healthReqs:
			req <- w.checkHealth()
		}
	}
}

// checkHealth returns the writer's health, checking PostgreSQL first when the writer has
// not heard from it for healthFresh and has no call to write: while calls wait, only a
// write tells whether writing works.
func (w *writer) checkHealth() bool {
	if time.Since(w.lastDB) > healthFresh && w.queueLen() == 0 {
		w.probe()
	}
	return w.healthy.Load()
}

// health asks the writer whether it reaches PostgreSQL. A writer busy for longer than
// healthWait answers with its last result.
func (w *writer) health(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, healthWait)
	defer cancel()
	req := make(chan bool, 1)
	select {
	case w.healthReqs <- req:
	case <-w.stopped:
		return w.healthy.Load()
	case <-ctx.Done():
		return w.healthy.Load()
	}
	select {
	case ok := <-req:
		return ok
	case <-ctx.Done():
		return w.healthy.Load()
	}
}

// healthFresh is how old the writer's last word from PostgreSQL may be for a health check
// to take it as current; it also bounds checks to ten a second, however many ask.
const healthFresh = 100 * time.Millisecond

// healthWait bounds how long a health check waits for the writer.
const healthWait = 2 * time.Second

// write inserts the calls of one batch and its journal row, in one statement. A batch
// whose journal row is already there (an earlier attempt committed, though its answer was
// lost) is written by nobody again, and counts as written.
func (w *writer) write(b *batch) error {
	defer w.busy()()
	ids := make([]int64, len(b.calls))
	micros := make([]int64, len(b.calls))
	for i, c := range b.calls {
		ids[i], micros[i] = c.pathID, c.micros
	}
	var d rollupDelta
	d.addCalls(b.calls, w.roll.loc)
	a := d.arrays()
	args := []any{pq.Array(ids), pq.Array(micros), w.daemon, b.seq,
		pq.Array(a.dp), pq.Array(a.dd), pq.Array(a.dn), pq.Array(a.pp), pq.Array(a.pn), pq.Array(a.pf),
		pq.Array(a.sh), pq.Array(a.sn), pq.Array(a.so)}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	res, err := w.insert.ExecContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("insert %d calls: %w", len(b.calls), err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		w.log.Info("a batch whose answer was lost had committed: not written again", "calls", len(b.calls))
	}
	return nil
}

// close writes every queued call and adds them to the rollups, until ctx ends, and stops
// the writer and the flusher.
func (w *writer) close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.flushed:
		return errors.Join(w.insert.Close(), w.roll.stmt.Close())
	case <-ctx.Done():
		if n := w.queueLen(); n > 0 {
			return fmt.Errorf("%d calls not written before the shutdown deadline", n)
		}
		return errors.New("rollups not written before the shutdown deadline: the next start adds them from the journal")
	}
}
