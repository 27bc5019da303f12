package main

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// outcome is what happened to one /call request; its name is sent in X-OxiTraffic.
type outcome int

// The outcomes of /call, in the order of their names in outcomeNames.
const (
	outCounted outcome = iota
	outQueued
	outHeld
	outDuplicate
	outBot
	outPrefetch
	outDNT
	outHead
	outNotImage
	outOtherSite
	outIgnored
	outDropped
	outInvalid
	outUnknown
	outLimited
	outUnavailable
	numOutcomes
)

// outcomeNames are the X-OxiTraffic values and the metrics labels of the outcomes.
var outcomeNames = [numOutcomes]string{
	"counted", "queued", "held", "duplicate", "bot", "prefetch", "dnt",
	"head", "not-image", "other-site", "ignored", "dropped",
	"invalid", "unknown", "limited", "unavailable",
}

// passing reports whether a call was not counted for a reason that may pass (a full queue,
// a spent budget, an error): such an answer is not cached, so that the browser asks again.
func (o outcome) passing() bool {
	return o == outDropped || o == outLimited || o == outUnavailable
}

// outcomeHeaders are the X-OxiTraffic header values, made once so that answers share them.
var outcomeHeaders = func() (h [numOutcomes][]string) {
	for o, name := range outcomeNames {
		h[o] = []string{name}
	}
	return h
}()

// handleCall answers the counter image and records one call per visitor and path.
func (s *server) handleCall(w http.ResponseWriter, r *http.Request) {
	path, err := pathAfter(r.URL.EscapedPath(), "/call")
	if err != nil {
		s.callError(w, r, outInvalid, err)
		return
	}
	now := time.Now()
	switch {
	case r.Method == http.MethodHead:
		// curl -I and link checkers: the image's headers, never a count.
		s.sendImage(w, outHead)
		return
	case s.bots && isBot(r.UserAgent()):
		s.sendImage(w, outBot)
		return
	case s.bots && isPrefetch(r.Header):
		s.sendImage(w, outPrefetch)
		return
	case notImage(r.Header):
		s.sendImage(w, outNotImage)
		return
	case otherSite(r.Header, s.hosts):
		s.sendImage(w, outOtherSite)
		return
	case s.dnt && optedOut(r.Header):
		s.sendImage(w, outDNT)
		return
	}
	addr := clientAddr(r, s.trusted)
	if len(s.ignore) > 0 && isTrusted(addr, s.ignore) {
		s.sendImage(w, outIgnored)
		return
	}
	visitor := visitorOf(addr)
	id, err := s.verify.check(r.Context(), path, visitor)
	switch {
	case errors.Is(err, errPending):
		s.hold(w, r, path, visitor, now)
		return
	case errors.Is(err, errUnknownPath):
		s.callError(w, r, outUnknown, err)
		return
	case errors.Is(err, errTooManyCheck):
		s.sendImage(w, outLimited)
		return
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
		return
	case err != nil:
		s.log.Error("check path", "path", path, "err", err)
		s.sendImage(w, outUnavailable)
		return
	}
	s.countOnce(w, id, visitor, path, now)
}

// countOnce records the visitor's call of a known path unless it is a duplicate. A place in
// the queue comes first, so that a call dropped for a full queue does not mark its visitor
// as seen.
func (s *server) countOnce(w http.ResponseWriter, id int32, visitor netip.Addr, path string, now time.Time) {
	if !s.store.reserveCall() {
		if s.dedup.contains(visitor, path, now) {
			s.sendImage(w, outDuplicate)
		} else {
			s.store.dropCall()
			s.sendImage(w, outDropped)
		}
		return
	}
	if s.dedup.seen(visitor, path, now) {
		s.store.releaseCall()
		s.sendImage(w, outDuplicate)
		return
	}
	s.record(w, id, now)
}

// hold answers a call of a path that awaits its check: the image, and the call held until
// the check says yes, once per visitor as for a known path.
func (s *server) hold(w http.ResponseWriter, r *http.Request, path string, visitor netip.Addr, now time.Time) {
	id, res, err := s.verify.hold(path, visitor, now, func() bool { return s.dedup.seen(visitor, path, now) })
	switch {
	case err != nil:
		s.callError(w, r, outUnknown, err)
	case res == callHeld:
		s.sendImage(w, outHeld)
	case res == callDuplicate:
		s.sendImage(w, outDuplicate)
	case res == callFull:
		s.sendImage(w, outDropped)
	default:
		// Stored meanwhile: counted as any call.
		s.countOnce(w, id, visitor, path, now)
	}
}

// record writes a call of a known path in a reserved place of the queue, and answers the
// image once it is committed, or queued when PostgreSQL does not answer.
func (s *server) record(w http.ResponseWriter, id int32, now time.Time) {
	healthy := s.store.healthy()
	b := s.store.recordCall(id, now)
	if !healthy {
		// PostgreSQL is down: the call waits in the queue; the visitor need not.
		s.sendImage(w, outQueued)
		return
	}
	// done is closed after the writer's first attempt, or writeTimeout after the batch
	// began: the visitor waits no longer, whatever PostgreSQL does.
	<-b.done
	if b.ok {
		s.sendImage(w, outCounted)
	} else {
		s.sendImage(w, outQueued)
	}
}

// sendImage answers the response image, the same whatever happened unless outcome_header
// is set, when X-OxiTraffic says what happened.
func (s *server) sendImage(w http.ResponseWriter, o outcome) {
	s.outcomes[o].Add(1)
	h := w.Header()
	src := s.imageHdr
	if o.passing() {
		src = s.noStoreHdr
	}
	for k, v := range src {
		h[k] = v
	}
	if s.outcomeHeader {
		h["X-Oxitraffic"] = outcomeHeaders[o]
	}
	w.Write(s.image)
}

// imageHeaders returns the headers of the image answer for a content type: one set that
// browsers may keep for a day, but never longer than the dedup window when one is set, and
// one set that nobody keeps.
func imageHeaders(contentType string, window time.Duration) (cached, uncached http.Header) {
	age := 24 * time.Hour
	if window > 0 {
		age = min(age, window)
	}
	cached = http.Header{
		"Content-Type":           {contentType},
		"Cache-Control":          {"private, max-age=" + strconv.Itoa(int(age/time.Second))},
		"X-Content-Type-Options": {"nosniff"},
	}
	uncached = http.Header{
		"Content-Type":           {contentType},
		"Cache-Control":          {"no-store"},
		"X-Content-Type-Options": {"nosniff"},
	}
	return cached, uncached
}

// callError answers a /call that gets no image.
func (s *server) callError(w http.ResponseWriter, r *http.Request, o outcome, err error) {
	s.outcomes[o].Add(1)
	if s.outcomeHeader {
		w.Header().Set("X-OxiTraffic", outcomeNames[o])
	}
	s.error(w, r, err)
}
