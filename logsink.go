package main

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// logFileName is the log file in the data folder.
const logFileName = "oxitraffic.log"

// logSink writes log lines to the log file and to stderr through buffers that are flushed
// every second, so that a log line per call costs no system call. reopen lets logrotate
// move the file away (SIGHUP).
type logSink struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	file   *bufio.Writer
	stderr *bufio.Writer
	stop   chan struct{}
	done   chan struct{}
}

// openLogSink opens (appending) or creates the log file and starts the periodic flush.
func openLogSink(path string, stderr io.Writer) (*logSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	s := &logSink{
		path: path, f: f,
		file:   bufio.NewWriterSize(f, 32<<10),
		stderr: bufio.NewWriterSize(stderr, 32<<10),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.flush()
			case <-s.stop:
				return
			}
		}
	}()
	return s, nil
}

// Write buffers one log line for both outputs.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.file.Write(p)
	s.stderr.Write(p)
	return len(p), nil
}

// flush writes out what is buffered.
func (s *logSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.file.Flush()
	s.stderr.Flush()
}

// reopen closes the log file and opens it again by name, for logrotate.
func (s *logSink) reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.file.Flush()
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("reopen log file: %w", err)
	}
	s.f.Close()
	s.f = f
	s.file.Reset(f)
	return nil
}

// close flushes and closes the log file.
func (s *logSink) close() error {
	close(s.stop)
	<-s.done
	s.flush()
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
