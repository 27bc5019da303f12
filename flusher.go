package main

import (
	"context"
	"time"
)

// The flusher is the writer's second goroutine: it adds the journal rows of the committed
// batches to the rollups (rollups.go) on the pool's second connection, so that batches keep
// committing while a flush runs. It is the only one to flush this daemon's rows, and it
// flushes only batches that the writer saw committed: a batch that commits while a flush
// runs, or whose answer was lost, is added by a later flush, once.

// flushLoop runs the flusher until the writer has stopped: it adds the written calls to the
// rollups every rollupEvery, answers the reads that need them, adds the rows that crashed
// daemons left, and follows other daemons; then it makes the last flush.
func (w *writer) flushLoop() {
	defer close(w.flushed)
	for {
		w.answerReads()
		w.maybeFlushRollups()
		w.maybeFollowPeers()
		timer := time.NewTimer(time.Until(w.nextFlush()))
		select {
		case <-w.kick:
		case <-timer.C:
		case req := <-w.rollupReqs:
			w.waiting = append(w.waiting, req)
		case <-w.stopped:
			timer.Stop()
			w.lastFlush()
			return
		}
		timer.Stop()
	}
}

// takeWritten puts the batches that the writer committed since into the flush that runs.
// Until then they wait in fresh, so that the writer wakes the flusher (kick) once a flush,
// not once a batch.
func (w *writer) takeWritten() {
	w.handMu.Lock()
	defer w.handMu.Unlock()
	for _, b := range w.fresh {
		w.roll.written(b.seq)
	}
	clear(w.fresh)
	w.fresh = w.fresh[:0]
}

// nothingWritten reports whether every batch that the writer committed is in the rollups.
func (w *writer) nothingWritten() bool {
	w.handMu.Lock()
	defer w.handMu.Unlock()
	return w.roll.idle() && len(w.fresh) == 0
}

// nextFlush returns when the flusher has work next: the written calls due for the rollups,
// or the look for orphaned rows when there are none; earlier, the reads that wait and the
// look at other daemons.
func (w *writer) nextFlush() time.Time {
	due := w.roll.due()
	if w.nothingWritten() {
		due = w.roll.rolled.Add(orphanEvery)
		if due.Before(w.roll.retry) {
			due = w.roll.retry
		}
	}
	if t := w.roll.tried.Add(minFlushGap); len(w.waiting) > 0 && t.Before(due) {
		due = t
	}
	if t := w.peerCheck.Add(peerEvery); w.onPeers.Load() != nil && t.Before(due) {
		due = t
	}
	return due
}

// lastFlush adds every written call to the rollups after the writer stopped, and answers
// every read that waits with its result.
func (w *writer) lastFlush() {
	err := w.flushRollups()
	if err != nil {
		w.log.Error("rollups not written at stop: the next start adds them from the journal", "err", err)
	}
	for _, req := range w.waiting {
		req <- err
	}
	w.waiting = nil
}

// minFlushGap bounds how often reads can have the rollups flushed: reads that ask within
// it of the last flush wait for the next one, which answers them all.
const minFlushGap = 100 * time.Millisecond

// answerReads flushes the rollups for the reads that wait, once minFlushGap has passed
// since the last flush, and answers them all with its result.
func (w *writer) answerReads() {
	if len(w.waiting) == 0 {
		return
	}
	var err error
	switch {
	case w.roll.waitRetry() && !w.nothingWritten():
		// The last flush failed a moment ago: the reads need not wait for the next.
		err = w.roll.failed
	case time.Since(w.roll.tried) < minFlushGap:
		return
	default:
		err = w.flushRollups()
	}
	for _, req := range w.waiting {
		req <- err
	}
	clear(w.waiting)
	w.waiting = w.waiting[:0]
}

// orphanEvery is how often a flusher with nothing of its own to add looks for journal rows
// that no daemon added to the rollups (a crashed one's).
const orphanEvery = 10 * time.Second

// maybeFlushRollups adds the written calls to the rollups when they are due, and the
// orphaned journal rows every orphanEvery.
func (w *writer) maybeFlushRollups() {
	idle := w.nothingWritten()
	orphans := idle && time.Since(w.roll.rolled) >= orphanEvery && !w.roll.waitRetry()
	if !orphans && (idle || time.Now().Before(w.roll.due())) {
		return
	}
	if err := w.runFlush(); err != nil {
		w.log.Error("cannot add calls to the rollups: trying again later", "err", err)
	}
}

// flushRollups adds every written call to the rollups now.
func (w *writer) flushRollups() error {
	if w.nothingWritten() {
		return nil
	}
	return w.runFlush()
}

// runFlush runs one flush of the rollups, whether or not this writer wrote anything since,
// and takes the counts of the rollups when another daemon added to them.
func (w *writer) runFlush() error {
	defer markBusy(&w.flushBusy)()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	w.takeWritten()
	gen, orphans, err := w.roll.flush(ctx)
	if err != nil {
		return err
	}
	// A flush that added nothing leaves the generation as it was.
	if gen != w.gen+w.roll.raised || orphans > 0 {
		// Another daemon added to the rollups since this one last did, or this one added
		// another's rows: take the counts.
		w.mustTake = true
	}
	w.gen = gen
	if w.mustTake && w.takePeerCounts(ctx) {
		w.mustTake = false
	}
	return nil
}

// requestFlush has the flusher add every call acknowledged so far to the rollups, so that a
// read of them that follows counts every acknowledged call.
func (w *writer) requestFlush(ctx context.Context) error {
	req := make(chan error, 1)
	select {
	case w.rollupReqs <- req:
	case <-w.flushed:
		return nil // the flusher wrote the rollups when the writer stopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
