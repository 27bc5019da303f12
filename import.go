package main

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// oxitraffic -import FILE... reads web server access logs (nginx's and Apache's combined
// and common formats, plain or gzip, - for standard input) and adds each page view as a
// call at its time, under the rules of /call. See the README, "Importing old logs".

// skipReason is why a line of a log made no call.
type skipReason int

// The reasons a line makes no call, in the order they are tested.
const (
	skipUnreadable skipReason = iota
	skipInvalidPath
	skipNotGET
	skipNot200
	skipNotPage
	skipCrawler
	skipIgnored
	skipDuplicate
	skipImported
	numSkips
)

// skipNames are the names of the reasons in the summary.
var skipNames = [numSkips]string{"unreadable", "invalid path", "not GET", "not 200", "not a page",
	"crawler", "ignored visitor", "duplicate", "already imported"}

// maxShownBad is how many unreadable lines are shown with their file and line number.
const maxShownBad = 5

// maxLogLine is the longest line read; a longer one is unreadable.
const maxLogLine = 64 << 10

// importer holds the state of one import run that lasts from file to file: the rules of
// /call, the visitors seen within the dedup window, and the counters.
type importer struct {
	bots   bool
	ignore []netip.Prefix
	window time.Duration
	max    int
	dedup  *dedupSet // made at the first page view, at its time
	latest int64     // the latest line time seen, in Unix seconds
	occ    occurrences
	isBot  map[string]bool // crawler rule results by User-Agent
	stderr io.Writer
	term   bool // stderr is a terminal that shows the progress line

	lines, bytes, calls atomic.Int64
	skipped             [numSkips]int64
	shownBad            int
}

// runImport is -import's whole work: it imports the logs named (- for stdin) into the
// database of cfg, in the time order of their first lines, shows progress on a terminal
// and ends with a summary on stdout. A file that cannot be read stops it; nothing of that
// file is written.
func runImport(ctx context.Context, cfg Config, names []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(names) == 0 {
		return errors.New("-import needs the log files to read (- for standard input)")
	}
	srcs, err := orderSources(names, stdin)
	if err != nil {
		return err
	}
	db, log, err := openImportDB(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, importTimeout)
	defer cancel()
	// The rollups must be those of this configuration's zone before journal rows are added.
	if err := syncRollups(ctx, db, cfg.parsed.loc, func() {}, log); err != nil {
		return err
	}
	// Held as a daemon holds it, until the import ends: no start rebuilds the rollups for
	// another zone meanwhile.
	if err := holdZone(ctx, db, cfg.parsed.loc, log); err != nil {
		return err
	}
	st, err := newImportStore(ctx, db, cfg.parsed.loc, log)
	if err != nil {
		return err
	}
	defer st.close()
	imp := &importer{
		bots: cfg.IgnoreBots, ignore: cfg.parsed.ignore, max: cfg.Dedup.MaxEntries,
		window: time.Duration(cfg.Dedup.Window), occ: occurrences{m: map[[16]byte]occurrence{}},
		isBot: map[string]bool{}, stderr: stderr,
	}
	if imp.window == 0 {
		// The daemon's "until restart" has no meaning for a log: a day is what a visit is.
		imp.window = 24 * time.Hour
	}
	var total int64
	for _, s := range srcs {
		total += s.size
	}
	stop := imp.showProgress(stderr, total)
	start := time.Now()
	for _, s := range srcs {
		if err := imp.importSource(ctx, st, s); err != nil {
			stop()
			return fmt.Errorf("import stopped at %s, of which nothing was written: %w", s.name, err)
		}
	}
	stop()
	fmt.Fprintf(stdout, "import %d: %s\n", st.run, imp.summary(len(srcs), time.Since(start)))
	return nil
}

// importTimeout bounds one run of -import or -unimport.
const importTimeout = 24 * time.Hour

// openImportDB connects to PostgreSQL as a start does and applies the schema, logging to stderr.
func openImportDB(ctx context.Context, cfg Config, stderr io.Writer) (*sql.DB, *slog.Logger, error) {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	db, err := openDB(ctx, cfg.DB, startPool, log)
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, importTimeout)
	defer cancel()
	if err := applySchema(sctx, db); err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, log, nil
}

// runUnimport is -unimport's whole work: it removes the calls that import run added.
func runUnimport(ctx context.Context, cfg Config, run int64, stdout, stderr io.Writer) error {
	if run < 1 {
		return fmt.Errorf("-unimport %d: imports are numbered from 1", run)
	}
	db, log, err := openImportDB(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, importTimeout)
	defer cancel()
	n, err := unimport(ctx, db, run, cfg.parsed.loc, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "import %d removed: %d calls\n", run, n)
	return nil
}

// source is one log to read: a file, or standard input.
type source struct {
	name  string
	size  int64 // bytes of the file, 0 for standard input
	first int64 // the time of its first readable line, in Unix seconds; MaxInt64 if none
	stdin io.Reader
}

// orderSources checks that every file can be opened and sorts the logs by the time of
// their first line, so that rotated logs given in any order are read oldest first. A file
// named twice (a link, a glob that overlaps another) is read once.
func orderSources(names []string, stdin io.Reader) ([]source, error) {
	srcs := make([]source, 0, len(names))
	var files []os.FileInfo
	for _, name := range names {
		s := source{name: name}
		if name == "-" {
			if stdin == nil {
				return nil, errors.New("- can be given only once")
			}
			// Its first line is read now, and read again from buf.
			r, err := decompress(stdin)
			if err != nil {
				return nil, fmt.Errorf("import standard input: %w", err)
			}
			br := bufio.NewReaderSize(r, maxLogLine)
			line, _ := br.ReadSlice('\n')
			buf := bytes.Clone(line)
			s.name, s.stdin, stdin = "standard input", io.MultiReader(bytes.NewReader(buf), br), nil
			s.first = firstTime(bytes.NewReader(buf))
		} else {
			f, err := os.Open(name)
			if err != nil {
				return nil, fmt.Errorf("import: %w", err)
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("import: %w", err)
			}
			if slices.ContainsFunc(files, func(o os.FileInfo) bool { return os.SameFile(o, fi) }) {
				f.Close()
				continue
			}
			files, s.size = append(files, fi), fi.Size()
			r, err := decompress(f)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("import %s: %w", name, err)
			}
			s.first = firstTime(r)
			f.Close()
		}
		srcs = append(srcs, s)
	}
	slices.SortStableFunc(srcs, func(a, b source) int { return cmp.Compare(a.first, b.first) })
	return srcs, nil
}

// firstTime returns the time of the first readable line among the first hundred of r.
func firstTime(r io.Reader) int64 {
	br := bufio.NewReaderSize(r, maxLogLine)
	for range 100 {
		line, err := br.ReadSlice('\n')
		if l, perr := parseLogLine(line); perr == nil {
			return l.secs
		}
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
	}
	return 1<<63 - 1
}

// decompress returns r, or its gzip stream when it starts like one.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return gzip.NewReader(br)
	}
	return br, nil
}

// countingReader adds the bytes it reads to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

// Read reads from the underlying reader and counts.
func (c countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// importSource reads one log and commits its calls when all of it was read.
func (imp *importer) importSource(ctx context.Context, st *importStore, s source) error {
	var raw io.Reader = s.stdin
	if raw == nil {
		f, err := os.Open(s.name)
		if err != nil {
			return err
		}
		defer f.Close()
		raw = f
	}
	r, err := decompress(countingReader{raw, &imp.bytes})
	if err != nil {
		return err
	}
	file, err := st.begin(ctx)
	if err != nil {
		return err
	}
	counted, err := imp.readLines(ctx, file, r, s.name)
	if err != nil {
		file.rollback()
		return err
	}
	added, taken, err := file.commit(ctx)
	if err != nil {
		return err
	}
	imp.skipped[skipImported] += taken
	imp.calls.Add(added - counted)
	return nil
}

// readLines stages every page view of r into file, and returns how many calls of the
// batches written so far it added to the count of calls. The lines are read and parsed in
// a goroutine of their own, so that the next lines are parsed while PostgreSQL writes a
// batch.
func (imp *importer) readLines(ctx context.Context, file *importFile, r io.Reader, name string) (counted int64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := make(chan []candidate, parsedAhead)
	parsed := make(chan error, 1)
	go func() {
		parsed <- imp.parse(ctx, r, name, found)
		close(found)
	}()
	for cs := range found {
		for _, c := range cs {
			if err == nil {
				err = file.stage(ctx, c.key[:], c.path, c.secs*1e6)
			}
		}
		if err != nil {
			cancel() // and drain found, so that parse ends
			continue
		}
		imp.calls.Add(file.added - counted)
		counted = file.added
	}
	return counted, errors.Join(err, <-parsed)
}

// parsedAhead bounds how many groups of parsedGroup page views wait to be staged.
const (
	parsedAhead = 8
	parsedGroup = 4096
)

// parse reads the lines of r and sends its page views to found, in groups.
func (imp *importer) parse(ctx context.Context, r io.Reader, name string, found chan<- []candidate) error {
	br := bufio.NewReaderSize(r, maxLogLine)
	var n int
	group := make([]candidate, 0, parsedGroup)
	// When the stager fails, ctx ends, reading stops and the stager says why.
	send := func() bool {
		select {
		case found <- group:
			group = make([]candidate, 0, parsedGroup)
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			n++
			imp.bad(name, n, "longer than 64 KiB")
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			n++
			imp.lines.Add(1)
			if c, ok := imp.take(line, name, n); ok {
				if group = append(group, c); len(group) == parsedGroup && !send() {
					return nil
				}
			}
		}
		if err == io.EOF {
			send()
			return nil
		}
		if err != nil {
			return fmt.Errorf("read line %d: %w", n+1, err)
		}
	}
}

// candidate is a page view that is to become a call, unless an import took its line before.
type candidate struct {
	key  [16]byte
	path string
	secs int64
}

// take applies the rules of /call to one line and reports whether it is a call to stage.
func (imp *importer) take(line []byte, name string, n int) (candidate, bool) {
	l, err := parseLogLine(line)
	if err != nil {
		imp.bad(name, n, err.Error())
		return candidate{}, false
	}
	if string(l.method) != "GET" {
		return imp.skip(skipNotGET)
	}
	if l.status != 200 {
		return imp.skip(skipNot200)
	}
	path, err := requestPath(string(l.target))
	if errors.Is(err, errInvalidPath) {
		return imp.skip(skipInvalidPath)
	} else if err != nil {
		imp.bad(name, n, "the request's target is not a path")
		return candidate{}, false
	}
	if !isPage(path) {
		return imp.skip(skipNotPage)
	}
	if imp.bots && l.hasUA && imp.crawler(l.ua) {
		return imp.skip(skipCrawler)
	}
	addr, err := netip.ParseAddr(string(l.addr))
	if err != nil || addr.Zone() != "" {
		imp.bad(name, n, "the client is not an address")
		return candidate{}, false
	}
	addr = addr.Unmap()
	c := candidate{path: path, secs: l.secs}
	// The key is counted before the visitor's rules, which depend on the address: the
	// n-th line of a run with the same text keeps its key whatever the configuration.
	imp.latest = max(imp.latest, l.secs)
	c.key = imp.occ.key(l.rest, l.secs, imp.latest)
	if len(imp.ignore) > 0 && isTrusted(addr, imp.ignore) {
		return imp.skip(skipIgnored)
	}
	// A line out of time order is checked as at the latest time seen, which is what the
	// window of remembered visitors can answer for; its call keeps its own time.
	now := time.Unix(imp.latest, 0)
	if imp.dedup == nil {
		imp.dedup = newDedupSet(imp.window, imp.max, now)
	}
	if imp.dedup.seen(visitorOf(addr), path, now) {
		return imp.skip(skipDuplicate)
	}
	return c, true
}

// skip counts a line that makes no call.
func (imp *importer) skip(r skipReason) (candidate, bool) {
	imp.skipped[r]++
	return candidate{}, false
}

// bad counts an unreadable line and shows the first few with their place, never their text.
func (imp *importer) bad(name string, n int, why string) {
	imp.skipped[skipUnreadable]++
	if imp.shownBad < maxShownBad {
		imp.shownBad++
		erase := ""
		if imp.term {
			erase = "\r\033[K" // the progress line, written again within half a second
		}
		fmt.Fprintf(imp.stderr, "%s%s:%d: unreadable line: %s\n", erase, name, n, why)
	}
}

// crawler applies the crawler rule of /call, remembering the answers for the User-Agents
// seen (a log repeats them).
func (imp *importer) crawler(ua []byte) bool {
	if bot, ok := imp.isBot[string(ua)]; ok {
		return bot
	}
	if len(imp.isBot) >= 50_000 {
		clear(imp.isBot)
	}
	bot := isBot(string(ua))
	imp.isBot[string(ua)] = bot
	return bot
}

// occurrences numbers identical lines (without their address) within a run, so that two
// visitors whose lines differ only in the address both count, and an import of the same
// lines again gives them the same keys. Identical lines have the same second, so only the
// last minutes are kept.
type occurrences struct {
	m      map[[16]byte]occurrence
	pruned int64
}

// occurrence is how many times a line was seen, and its time.
type occurrence struct {
	n    int
	secs int64
}

// occurrenceKeep is how long, in seconds of log time, the occurrences of a line are kept:
// lines come out of order by the time their answers took, seconds.
const occurrenceKeep = 120

// key returns the key of a line: its time (Unix seconds, 4 bytes big-endian, so that keys
// of a log come in order and PostgreSQL adds them at the end of the index), then the
// first 12 bytes of SHA-256 of the line without its address field, followed for its n-th
// occurrence in the run (n > 1) by a newline and n.
func (o *occurrences) key(rest []byte, secs, latest int64) [16]byte {
	sum := sha256.Sum256(rest)
	h := lineKey(secs, sum)
	if latest-o.pruned > occurrenceKeep {
		for k, v := range o.m {
			if v.secs < latest-occurrenceKeep {
				delete(o.m, k)
			}
		}
		o.pruned = latest
	}
	e, ok := o.m[h]
	if !ok {
		o.m[h] = occurrence{1, secs}
		return h
	}
	e.n++
	o.m[h] = e
	return lineKey(secs, sha256.Sum256(append(append(bytes.Clone(rest), '\n'), strconv.Itoa(e.n)...)))
}

// lineKey is a line's key from its time and hash.
func lineKey(secs int64, sum [32]byte) [16]byte {
	var k [16]byte
	binary.BigEndian.PutUint32(k[:4], uint32(secs))
	copy(k[4:], sum[:12])
	return k
}

// summary is the last line of an import.
func (imp *importer) summary(files int, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "imported %d lines of %d files in %s: %d calls added; skipped:",
		imp.lines.Load(), files, took.Round(time.Millisecond), imp.calls.Load())
	for r, n := range imp.skipped {
		if r > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %d %s", n, skipNames[r])
	}
	return b.String()
}

// showProgress writes a progress line to w twice a second while w is a terminal, until
// the function it returns is called, which erases it.
func (imp *importer) showProgress(w io.Writer, total int64) (stop func()) {
	f, ok := w.(*os.File)
	if !ok {
		return func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	imp.term = true
	done, finished := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				lines := imp.lines.Load()
				of := ""
				if total > 0 {
					of = fmt.Sprintf(" of %s", formatBytes(total))
				}
				rate := float64(lines) / time.Since(start).Seconds()
				fmt.Fprintf(w, "\r\033[K%d lines, %s%s read, %d calls added, %.0f lines/s",
					lines, formatBytes(imp.bytes.Load()), of, imp.calls.Load(), rate)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// formatBytes renders a size as 12.3 MB.
func formatBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
