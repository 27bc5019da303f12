package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends a state such as "READY=1" to systemd over $NOTIFY_SOCKET, as
// sd_notify(3) does. Without the variable it does nothing.
func sdNotify(getenv func(string) string, state string) error {
	addr := getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// watchdog sends WATCHDOG=1 at half of $WATCHDOG_USEC, until ctx ends, while the daemon
// lives: while stuck, the time the writer has spent in its current database operation,
// stays under half the interval. The writer's operations are bounded by socket deadlines,
// so only a writer that truly hangs stops the pings; a PostgreSQL outage does not.
func watchdog(ctx context.Context, getenv func(string) string, stuck func() time.Duration) {
	usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 || getenv("NOTIFY_SOCKET") == "" {
		return
	}
	if pid := getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return // meant for another process
	}
	half := time.Duration(usec) * time.Microsecond / 2
	t := time.NewTicker(half)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if stuck() < half {
				sdNotify(getenv, "WATCHDOG=1")
			}
		}
	}
}
