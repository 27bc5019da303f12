package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxPathLen is the longest path, in bytes after decoding, that is accepted.
const maxPathLen = 2048

// errInvalidPath is wrapped by every path rule that fails; its message is shown to the client.
var errInvalidPath = errors.New("invalid path")

// pathAfter returns the tracked path in a request's escaped URL path after prefix
// ("/call"): percent-decoded, without leading or trailing slashes. The index page is "".
// It fails, wrapping errInvalidPath, for paths that may never be stored.
func pathAfter(escaped, prefix string) (string, error) {
	raw, ok := strings.CutPrefix(escaped, prefix)
	if !ok || (raw != "" && raw[0] != '/') {
		return "", errors.New("no such route")
	}
	p, err := url.PathUnescape(raw)
	if err != nil {
		return "", invalidPath("percent-encoding does not decode")
	}
	return cleanPath(p)
}

// cleanPath makes a decoded path canonical, as web servers map URLs to pages: repeated
// slashes collapse to one (nginx's merge_slashes, Apache), and leading and trailing
// slashes go. It then applies the rules of what may be stored.
func cleanPath(p string) (string, error) {
	if strings.Contains(p, "//") {
		p = collapseSlashes(p)
	}
	p = strings.Trim(p, "/")
	switch {
	case len(p) > maxPathLen:
		return "", invalidPath("longer than 2048 bytes")
	case !utf8.ValidString(p):
		return "", invalidPath("not UTF-8")
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return "", invalidPath("contains a control character")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return "", invalidPath(`contains a "." or ".." segment`)
		}
	}
	return p, nil
}

// collapseSlashes replaces each run of slashes with one.
func collapseSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// invalidPath wraps errInvalidPath with the rule that failed.
func invalidPath(why string) error {
	return fmt.Errorf("%w: %s", errInvalidPath, why)
}
