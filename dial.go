package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/lib/pq"
)

// pool is the size of a connection pool and the bound on any single network read or write
// of its connections (0: none).
type pool struct {
	conns     int
	ioTimeout time.Duration
}

// The pools of a running daemon: the start pool applies the schema and may rebuild the
// rollups for long; the read pool serves the API, the pages and new paths; the writer has
// its own two connections, one for the batches and one for the flushes of the rollups, so
// that neither waits for the other. A socket deadline on each read and write of the last two makes a
// PostgreSQL that stops answering (a cut network, a stalled disk) an error instead of a
// hang: lib/pq's context deadline only sends a cancel request.
var (
	startPool = pool{conns: 2}
	readPool  = pool{conns: maxReads + 2, ioTimeout: readTimeout + 5*time.Second}
	writePool = pool{conns: 2, ioTimeout: writeTimeout + 5*time.Second}
)

// openDB connects to PostgreSQL with a pool of the given size, retrying until
// cfg.ConnectTimeout has passed, so that a daemon started together with its database
// waits for it.
func openDB(ctx context.Context, cfg DBConfig, p pool, log *slog.Logger) (*sql.DB, error) {
	connector, err := pq.NewConnectorConfig(pq.Config{
		Host:            cfg.Host,
		Port:            uint16(cfg.Port),
		User:            cfg.Username,
		Password:        cfg.Password,
		Database:        cfg.Database,
		SSLMode:         pq.SSLMode(cfg.SSLMode),
		ConnectTimeout:  5 * time.Second,
		ApplicationName: "oxitraffic",
		TZ:              "UTC",
		// One round trip per parameterized statement instead of two.
		BinaryParameters: true,
	})
	if err != nil {
		return nil, fmt.Errorf("database settings: %w", err)
	}
	connector.Dialer(deadlineDialer{timeout: p.ioTimeout})
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(p.conns)
	db.SetMaxIdleConns(p.conns)
	db.SetConnMaxIdleTime(5 * time.Minute)

	where := fmt.Sprintf("database %s on %s port %d", cfg.Database, cfg.Host, cfg.Port)
	deadline := time.Now().Add(time.Duration(cfg.ConnectTimeout))
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = db.PingContext(pctx)
		cancel()
		if err == nil {
			return db, nil
		}
		// PostgreSQL answered but refused (wrong password, no such database): waiting
		// will not help. It may still be starting up (class 57, operator intervention).
		if pqErr := (*pq.Error)(nil); errors.As(err, &pqErr) && pqErr.Code.Class() != "57" {
			db.Close()
			return nil, fmt.Errorf("PostgreSQL refused the connection (%s): %v", where, err)
		}
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			db.Close()
			return nil, fmt.Errorf("PostgreSQL could not be reached (%s) within %s: %v", where, time.Duration(cfg.ConnectTimeout), err)
		}
		log.Warn("waiting for PostgreSQL", "where", where, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// deadlineDialer dials PostgreSQL and, with a timeout, bounds every read and write of the
// connection by it.
type deadlineDialer struct {
	d       net.Dialer
	timeout time.Duration
}

// Dial connects without a context.
func (d deadlineDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialTimeout connects within timeout.
func (d deadlineDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

// DialContext connects until ctx ends.
func (d deadlineDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, address)
	if err != nil || d.timeout == 0 {
		return c, err
	}
	return &deadlineConn{Conn: c, timeout: d.timeout}, nil
}

// deadlineConn bounds each exchange with PostgreSQL by timeout: a write (lib/pq sends a
// query in one) sets the deadline of the write and of the reads of its answer, so that an
// answer that trickles in cannot extend it. A deadline that lib/pq set itself (the connect
// timeout during the start-up) wins when it is earlier.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	own     time.Time // the deadline lib/pq set, zero when none
}

// SetDeadline records lib/pq's own deadline and sets it.
func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.own = t
	return c.Conn.SetDeadline(t)
}

// Write writes, and sets the deadline of this exchange.
func (c *deadlineConn) Write(p []byte) (int, error) {
	d := time.Now().Add(c.timeout)
	if !c.own.IsZero() && c.own.Before(d) {
		d = c.own
	}
	if err := c.Conn.SetDeadline(d); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
