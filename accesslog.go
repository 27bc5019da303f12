package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Access logs as nginx and Apache write them in their combined and common formats, and
// which of their requests are page views.

// requestPath returns the /call path of a request's target: without query string or
// fragment, without scheme and host (a proxy's absolute form), under the path rules.
func requestPath(target string) (string, error) {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	for _, scheme := range []string{"http://", "https://"} {
		if rest, ok := strings.CutPrefix(target, scheme); ok {
			target = "/"
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				target = rest[i:]
			}
		}
	}
	return pathAfter(target, "")
}

// assetExtensions are the extensions of paths that are not pages: styles, scripts, images,
// fonts, feeds, media, downloads and the files that crawlers and browsers fetch by name.
var assetExtensions = map[string]bool{
	"css": true, "js": true, "mjs": true, "map": true, "json": true, "wasm": true,
	"png": true, "jpg": true, "jpeg": true, "gif": true, "webp": true, "avif": true, "svg": true,
	"ico": true, "bmp": true, "tif": true, "tiff": true,
	"woff": true, "woff2": true, "ttf": true, "otf": true, "eot": true,
	"xml": true, "rss": true, "atom": true, "txt": true, "webmanifest": true,
	"mp3": true, "mp4": true, "m4a": true, "webm": true, "ogg": true, "ogv": true, "wav": true, "mov": true,
	"pdf": true, "zip": true, "gz": true, "tgz": true, "xz": true, "bz2": true, "7z": true, "tar": true,
	"exe": true, "dmg": true, "iso": true, "apk": true, "deb": true, "rpm": true,
}

// isPage reports whether a path is a page: not under .well-known/, its last segment not
// a feed (feed, rss, atom) and without an extension of assetExtensions.
func isPage(path string) bool {
	if path == ".well-known" || strings.HasPrefix(path, ".well-known/") {
		return false
	}
	last := path[strings.LastIndexByte(path, '/')+1:]
	switch last {
	case "feed", "rss", "atom":
		return false
	}
	i := strings.LastIndexByte(last, '.')
	if i < 0 {
		return true
	}
	return !assetExtensions[strings.ToLower(last[i+1:])]
}

// logLine is one line of an access log in the combined or common format; its slices point
// into the line, unless an escape had to be decoded.
type logLine struct {
	addr   []byte // the client, the first field
	rest   []byte // the line after the first field: what identifies it, without the address
	secs   int64  // the time, in Unix seconds
	method []byte
	target []byte
	status int
	ua     []byte
	hasUA  bool // the combined format: referer and User-Agent follow
}

// errBadLine is wrapped by every reason a line is not in the combined or common format.
var errBadLine = errors.New("not in the combined or common log format")

// parseLogLine reads `host ident user [time] "request" status bytes`, followed in the
// combined format by `"referer" "user-agent"`; fields after those are ignored.
func parseLogLine(line []byte) (logLine, error) {
	var l logLine
	line = bytes.TrimRight(line, "\r\n")
	i := bytes.IndexByte(line, ' ')
	if i <= 0 {
		return l, fmt.Errorf("%w: no client address", errBadLine)
	}
	l.addr, l.rest = line[:i], line[i+1:]
	j := bytes.IndexByte(l.rest, '[')
	if j < 0 || len(l.rest) < j+28 || l.rest[j+27] != ']' {
		return l, fmt.Errorf("%w: no [time]", errBadLine)
	}
	secs, ok := parseLogTime(l.rest[j+1 : j+27])
	if !ok {
		return l, fmt.Errorf("%w: the time is not like 10/Oct/2000:13:55:36 -0700", errBadLine)
	}
	l.secs = secs
	b, ok := bytes.CutPrefix(l.rest[j+28:], []byte(" "))
	req, b, ok2 := quoted(b)
	if !ok || !ok2 {
		return l, fmt.Errorf("%w: no \"request\"", errBadLine)
	}
	l.method, l.target, _ = bytes.Cut(req, []byte(" "))
	l.target, _, _ = bytes.Cut(l.target, []byte(" "))
	status, b, _ := bytes.Cut(bytes.TrimPrefix(b, []byte(" ")), []byte(" "))
	size, b, more := bytes.Cut(b, []byte(" "))
	if len(status) != 3 || len(size) == 0 {
		return l, fmt.Errorf("%w: no status and size", errBadLine)
	}
	if l.status, ok = atoi3(status); !ok {
		return l, fmt.Errorf("%w: the status is not a number", errBadLine)
	}
	if more {
		if _, b, ok = quoted(b); ok {
			b, ok = bytes.CutPrefix(b, []byte(" "))
			if l.ua, _, ok2 = quoted(b); !ok || !ok2 {
				return l, fmt.Errorf("%w: a \"referer\" without a \"user-agent\"", errBadLine)
			}
			l.hasUA = true
			if string(l.ua) == "-" {
				l.ua = nil
			}
		}
	}
	return l, nil
}

// atoi3 parses three decimal digits.
func atoi3(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = 10*n + int(c-'0')
	}
	return n, true
}

// quoted reads a field in double quotes at the start of b, as nginx (\xHH) and Apache
// (\" \\ \xhh) escape it, and returns it decoded with what follows its closing quote.
func quoted(b []byte) (field, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	b = b[1:]
	escaped := false
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			if !escaped {
				return b[:i], b[i+1:], true
			}
			return unescapeLog(b[:i]), b[i+1:], true
		}
	}
	return nil, nil, false
}

// unescapeLog decodes the backslash escapes of a quoted log field.
func unescapeLog(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out = append(out, b[i])
			continue
		}
		i++
		if b[i] == 'x' && i+2 < len(b) {
			if v, err := strconv.ParseUint(string(b[i+1:i+3]), 16, 8); err == nil {
				out = append(out, byte(v))
				i += 2
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}

// months are the month names of log times.
var months = map[string]time.Month{"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
	"Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12}

// parseLogTime parses 10/Oct/2000:13:55:36 -0700 into Unix seconds.
func parseLogTime(b []byte) (int64, bool) {
	if len(b) != 26 || b[2] != '/' || b[6] != '/' || b[11] != ':' || b[14] != ':' || b[17] != ':' || b[20] != ' ' {
		return 0, false
	}
	month, ok := months[string(b[3:6])]
	num := func(s []byte) int {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				ok = false
			}
			n = 10*n + int(c-'0')
		}
		return n
	}
	day, year, hour, minute, sec := num(b[0:2]), num(b[7:11]), num(b[12:14]), num(b[15:17]), num(b[18:20])
	zone := num(b[22:26])
	if !ok || (b[21] != '+' && b[21] != '-') || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return 0, false
	}
	offset := int64(zone/100*3600 + zone%100*60)
	if b[21] == '-' {
		offset = -offset
	}
	return time.Date(year, month, day, hour, minute, sec, 0, time.UTC).Unix() - offset, true
}
