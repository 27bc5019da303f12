package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxCheckBody is how much of a page the check reads to find the counter in it.
const maxCheckBody = 512 << 10

// shapeTTL is how long what the site answers for a path that cannot exist is trusted.
const shapeTTL = time.Hour

// siteShape is what the tracked website answers, in one folder, for paths that cannot
// exist: a 404 or another refusal (catchAll false), or a page (catchAll true), which is the
// same page each time when same is set. failed: the site could not say.
type siteShape struct {
	at       time.Time
	failed   bool
	catchAll bool
	fallback [sha256.Size]byte
	same     bool
}

// Bounds of what the checks remember of the site's shape.
const (
	maxShapes    = 256         // folders whose shape is remembered
	shapeRetry   = time.Minute // how long a probe that failed is remembered
	shapeRecheck = time.Minute // a page that differs from an older fallback has it asked again
	maxCounterAt = 4096        // the longest counter URL read in a page
	maxTagBack   = 1024        // how far before src= the start of its tag is looked for
	catchAllMsg  = "the site answers 200 for any path, and this page shows no counter of its own"
)

// newCheckClient returns the HTTP client of the checks: redirects are followed only within
// the tracked website's host, and one from https to http on that host is followed to https.
func newCheckClient(base *url.URL, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if !strings.EqualFold(req.URL.Host, base.Host) {
				return fmt.Errorf("%w (%s)", errOffHost, req.URL.Host)
			}
			if req.URL.Scheme == "http" && via[len(via)-1].URL.Scheme == "https" {
				// A server behind a TLS proxy that names its own scheme wrongly: never
				// downgraded, the page is asked for over https.
				req.URL.Scheme = "https"
			}
			if len(via) >= 10 {
				return errors.New("more than 10 redirects")
			}
			return nil
		},
	}
}

// fetch asks the tracked website whether path is one of its pages: nil when it is,
// errUnknownPath for a definite no (404, 410, a redirect off the site, or a page that is
// not this path's), another error when the site could not say (unreachable, a timeout,
// 5xx, 429, 403, any other status).
//
// A 200 is this path's page when its HTML shows the counter of this path (an <img> whose
// src URL's path starts with /call, followed by this path). When it shows only the counters
// of other paths, it is another page answering under this name (a case-insensitive server,
// a session id or PATH_INFO in the path). When it shows no counter, it is a page unless the
// site answers 200 for paths of the same folder that cannot exist; on such a site, a page
// counts only when it differs from what those paths get, and they get the same page.
func (v *verifier) fetch(ctx context.Context, path string) error {
	status, body, err := v.get(ctx, path)
	switch {
	case errors.Is(err, errOffHost):
		return fmt.Errorf("%w: %v", errUnknownPath, err)
	case err != nil:
		return fmt.Errorf("check %s: %w", path, err)
	case status == http.StatusNotFound || status == http.StatusGone:
		return fmt.Errorf("%w: status %d", errUnknownPath, status)
	case status != http.StatusOK:
		return fmt.Errorf("check %s: status %d", path, status)
	}
	self, others := counterRefs(body, path)
	switch {
	case self:
		return nil
	case others:
		return fmt.Errorf("%w: its page shows the counter of another path", errUnknownPath)
	}
	folder := folderOf(path)
	shape, err := v.siteShape(ctx, folder, false)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if !shape.catchAll {
		return nil
	}
	if !shape.same || sha256.Sum256(body) == shape.fallback {
		return fmt.Errorf("%w: %s", errUnknownPath, catchAllMsg)
	}
	if v.now().Sub(shape.at) >= shapeRecheck {
		// The fallback may have changed since (a new build of an app): ask again.
		if shape, err = v.siteShape(ctx, folder, true); err != nil {
			return fmt.Errorf("check %s: %w", path, err)
		}
		if shape.catchAll && (!shape.same || sha256.Sum256(body) == shape.fallback) {
			return fmt.Errorf("%w: %s", errUnknownPath, catchAllMsg)
		}
	}
	return nil
}

// folderOf returns the folder of a path: "blog" for "blog/post", "" for "post".
func folderOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return ""
}

// get requests path from the tracked website and returns its status and the start of its body.
func (v *verifier) get(ctx context.Context, path string) (int, []byte, error) {
	u := &url.URL{
		Scheme: v.base.Scheme,
		Host:   v.base.Host,
		Path:   strings.TrimSuffix(v.base.Path, "/") + "/" + path,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("User-Agent", "OxiTraffic/"+version+" (path check)")
	resp, err := v.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody))
	if err != nil {
		return 0, nil, fmt.Errorf("read page: %w", err)
	}
	return resp.StatusCode, body, nil
}

// siteShape returns what the site answers for paths of folder that cannot exist, asking it
// (one or two requests, taken from the overall budget) when nothing is known from the last
// shapeTTL, a failure from the last shapeRetry, or again is set.
func (v *verifier) siteShape(ctx context.Context, folder string, again bool) (siteShape, error) {
	v.probeMu.Lock()
	defer v.probeMu.Unlock()
	v.mu.Lock()
	shape, known := v.shapes[folder]
	now := v.now()
	v.mu.Unlock()
	switch {
	case known && shape.failed && now.Sub(shape.at) < shapeRetry:
		return shape, errors.New("the site did not say what it answers for a path that cannot exist; asked again within a minute")
	case known && !shape.failed && now.Sub(shape.at) < shapeTTL && !again:
		return shape, nil
	}
	shape, err := v.probeShape(ctx, folder)
	shape.at, shape.failed = now, err != nil
	v.mu.Lock()
	if v.shapes == nil || len(v.shapes) >= maxShapes {
		v.shapes = map[string]siteShape{}
	}
	v.shapes[folder] = shape
	v.mu.Unlock()
	return shape, err
}

// probeShape asks the site for two paths of folder that cannot exist when the first gets a page.
func (v *verifier) probeShape(ctx context.Context, folder string) (siteShape, error) {
	var shape siteShape
	status, body, err := v.probe(ctx, folder)
	if err != nil || status != http.StatusOK {
		return shape, err
	}
	first := sha256.Sum256(body)
	if status, body, err = v.probe(ctx, folder); err != nil {
		return shape, err
	}
	// A second probe that finds nothing: the site is not one page for every path.
	shape.catchAll = status == http.StatusOK
	shape.fallback, shape.same = first, sha256.Sum256(body) == first
	return shape, nil
}

// probe asks the site for a path of folder that cannot exist, as one check of the overall
// budget (which may go into debt for it), and returns its answer: 200, or another status
// that refuses the path (404, 410, 403, any 4xx but 408 and 429); else an error.
func (v *verifier) probe(ctx context.Context, folder string) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	v.mu.Lock()
	v.overall.take()
	v.mu.Unlock()
	p := probePath()
	if folder != "" {
		p = folder + "/" + p
	}
	status, body, err := v.get(ctx, p)
	switch {
	case errors.Is(err, errOffHost):
		return http.StatusNotFound, nil, nil
	case err != nil:
		return 0, nil, fmt.Errorf("ask for a path that cannot exist: %w", err)
	case status == http.StatusOK,
		status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		return status, body, nil
	}
	return 0, nil, fmt.Errorf("ask for a path that cannot exist: status %d", status)
}

// probePath returns a path that no website serves.
func probePath() string {
	k0, k1 := randomKey()
	var b [16]byte
	for i := range 8 {
		b[i], b[8+i] = byte(k0>>(8*i)), byte(k1>>(8*i))
	}
	return "oxitraffic-check-" + hex.EncodeToString(b[:])
}

// counterRefs reports whether the HTML shows the counter of path (self), and whether it
// shows the counter of some other path (others): an <img> whose src URL's path starts with
// a /call segment, the rest of it being the counter's path.
func counterRefs(body []byte, path string) (self, others bool) {
	for off := 0; ; {
		i := indexASCIIFold(body[off:], "src=")
		if i < 0 {
			return self, others
		}
		at := off + i
		off = at + 4
		if !inImgTag(body[max(at-maxTagBack, 0):at]) {
			continue
		}
		if p, ok := counterPath(attrValue(body[off:min(off+maxCounterAt, len(body))])); ok {
			if p == path {
				self = true
			} else {
				others = true
			}
		}
	}
}

// inImgTag reports whether the HTML before an attribute is inside an <img tag: its last
// '<' opens img, and no '>' closes the tag between.
func inImgTag(before []byte) bool {
	i := bytes.LastIndexByte(before, '<')
	if i < 0 || bytes.IndexByte(before[i:], '>') >= 0 {
		return false
	}
	tag := before[i+1:]
	return len(tag) > 3 && indexASCIIFold(tag[:3], "img") == 0 && (tag[3] == ' ' || tag[3] == '\t' || tag[3] == '\n' || tag[3] == '\r')
}

// attrValue returns the value of an HTML attribute from just after its '=': quoted or bare,
// with character references decoded; "" when it does not end within b.
func attrValue(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return ""
	}
	var end int
	if q := b[0]; q == '"' || q == '\'' {
		b = b[1:]
		end = bytes.IndexByte(b, q)
	} else {
		end = bytes.IndexAny(b, " \t\r\n>")
	}
	if end < 0 {
		return ""
	}
	return html.UnescapeString(string(b[:end]))
}

// counterPath returns the tracked path of a counter URL, absolute or relative, whose path
// starts with a /call segment: what follows it, made canonical as /call does.
func counterPath(raw string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", false
	}
	escaped := u.EscapedPath()
	if escaped != "/call" && !strings.HasPrefix(escaped, "/call/") {
		return "", false
	}
	p, err := pathAfter(escaped, "/call")
	return p, err == nil
}

// indexASCIIFold returns the index of the lower-case ASCII s in b, ignoring ASCII case, or -1.
func indexASCIIFold(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if lowerTab[b[i]] == s[0] && hasPrefixFold(string(b[i:i+len(s)]), s) {
			return i
		}
	}
	return -1
}
