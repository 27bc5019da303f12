package main

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
)

// logFileName is the log file in the data folder.
const logFileName = "oxitraffic.log"

// logSink writes each log line to the log file and to stderr. Lines are few (start, stop,
// new paths, errors: calls are not logged), so they are written at once, and a crash loses
// none of them. reopen lets logrotate move the file away (SIGHUP).
type logSink struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	stderr io.Writer
}

// openLogSink opens (appending) or creates the log file.
func openLogSink(path string, stderr io.Writer) (*logSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &logSink{path: path, f: f, stderr: stderr}, nil
}

// Write writes one log line to both outputs.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.Write(p)
	s.stderr.Write(p)
	return len(p), nil
}

// reopen closes the log file and opens it again by name, for logrotate.
func (s *logSink) reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("reopen log file: %w", err)
	}
	s.f.Close()
	s.f = f
	return nil
}

// close closes the log file.
func (s *logSink) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}

// addrPattern matches IPv4 and IPv6 addresses, with or without a port.
var addrPattern = regexp.MustCompile(`\[?[0-9a-fA-F]*:[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\]?(:\d+)?|\d+\.\d+\.\d+\.\d+(:\d+)?`)

// serverErrorLog returns the logger for net/http's own messages, which name the client's
// address (a panic in a handler, say): the address is replaced before the line is logged.
func serverErrorLog(l *slog.Logger) *log.Logger {
	return log.New(redactWriter{l}, "", 0)
}

// redactWriter logs each line written to it as a warning, with addresses removed.
type redactWriter struct {
	l *slog.Logger
}

// Write logs p without the addresses in it.
func (r redactWriter) Write(p []byte) (int, error) {
	r.l.Warn("http server", "msg", addrPattern.ReplaceAllString(strings.TrimSpace(string(p)), "[address]"))
	return len(p), nil
}
