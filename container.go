package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheckTimeout bounds the whole of one -healthcheck: connecting, asking and reading.
const healthcheckTimeout = 3 * time.Second

// healthcheckURL is where -healthcheck asks a daemon listening on socketAddress: a wildcard
// host (0.0.0.0, ::, none) is asked on loopback, since the check runs on the same machine.
func healthcheckURL(socketAddress string) (string, error) {
	host, port, err := net.SplitHostPort(socketAddress)
	if err != nil {
		return "", fmt.Errorf("socket_address %q: %w", socketAddress, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

// runHealthcheck asks the daemon of this configuration for /healthz, as a container's
// HEALTHCHECK does without a shell or curl: nil and one line on stdout when it answers
// 200 "ok", otherwise an error saying why, which makes the exit status 1.
func runHealthcheck(ctx context.Context, cfg Config, stdout io.Writer) error {
	url, err := healthcheckURL(cfg.SocketAddress)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// A proxy from the environment must not answer in the daemon's place.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("unhealthy: %s did not answer within %s", url, healthcheckTimeout)
		}
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err != nil {
		return fmt.Errorf("unhealthy: read the answer of %s: %w", url, err)
	}
	text := strings.Join(strings.Fields(string(body)), " ")
	if resp.StatusCode != http.StatusOK || text != "ok" {
		return fmt.Errorf("unhealthy: %s answered %d %q", url, resp.StatusCode, text)
	}
	fmt.Fprintf(stdout, "healthy: %s answered %d %s\n", url, resp.StatusCode, text)
	return nil
}
