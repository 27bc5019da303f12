package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// histogram is a Prometheus histogram with fixed upper bounds.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []uint64 // one per bound, not cumulative
	total  uint64
	sum    float64
}

// newHistogram returns an empty histogram with the given ascending upper bounds.
func newHistogram(bounds ...float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds))}
}

// observe records one value.
func (h *histogram) observe(v float64) {
	h.mu.Lock()
	for i, b := range h.bounds {
		if v <= b {
			h.counts[i]++
			break
		}
	}
	h.total++
	h.sum += v
	h.mu.Unlock()
}

// write renders the histogram as name_bucket, name_sum and name_count lines.
func (h *histogram) write(w io.Writer, name, help string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %s\n%s_count %d\n",
		name, h.total, name, strconv.FormatFloat(h.sum, 'g', -1, 64), name, h.total)
}

// writeMetric renders one counter or gauge with its help and type lines.
func writeMetric(w io.Writer, name, kind, help string, value int64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, kind, name, value)
}

// handleMetrics answers the counters in the Prometheus text exposition format.
func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "# HELP oxitraffic_calls_total /call requests by outcome.\n# TYPE oxitraffic_calls_total counter\n")
	for o := range numOutcomes {
		fmt.Fprintf(bw, "oxitraffic_calls_total{outcome=%q} %d\n", outcomeNames[o], s.outcomes[o].Load())
	}
	v := s.verify.stats()
	fmt.Fprintf(bw, "# HELP oxitraffic_verifications_total Checks of new paths against the tracked website by result.\n# TYPE oxitraffic_verifications_total counter\n")
	for _, c := range []struct {
		name string
		n    int64
	}{{"found", v.found}, {"not_found", v.notFound}, {"failed", v.failed}, {"rate_limited", v.limited}} {
		fmt.Fprintf(bw, "oxitraffic_verifications_total{result=%q} %d\n", c.name, c.n)
	}
	fmt.Fprintf(bw, "# HELP oxitraffic_held_calls_total Calls of paths awaiting their check, by what became of them.\n# TYPE oxitraffic_held_calls_total counter\n")
	fmt.Fprintf(bw, "oxitraffic_held_calls_total{result=\"written\"} %d\noxitraffic_held_calls_total{result=\"dropped\"} %d\n", v.heldWritten, v.heldDropped)
	writeMetric(bw, "oxitraffic_held_calls", "gauge", "Calls held for paths that await their check.", int64(v.held))
	writeMetric(bw, "oxitraffic_pending_paths", "gauge", "Paths that await their check.", int64(v.pending))
	st := s.store.stats()
	writeMetric(bw, "oxitraffic_calls_written_total", "counter", "Calls committed to PostgreSQL.", st.written)
	writeMetric(bw, "oxitraffic_calls_lost_total", "counter", "Calls lost because the queue was full.", st.lost)
	writeMetric(bw, "oxitraffic_queue_length", "gauge", "Calls waiting to be written.", int64(st.queued))
	writeMetric(bw, "oxitraffic_dedup_entries", "gauge", "Remembered (visitor, path) hashes.", int64(s.dedup.len()))
	st.batchSize.write(bw, "oxitraffic_write_batch_size", "Calls per written batch.")
	st.writeTime.write(bw, "oxitraffic_write_seconds", "Time to write one batch.")
}
