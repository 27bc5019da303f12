// Command oxitraffic is a self-hosted, privacy-respecting website traffic counter.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// version is the daemon's version, set at build time with -ldflags "-X main.version=...".
var version = "0.3.0-dev"

// main runs the daemon until SIGINT or SIGTERM and exits 1 on error.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "oxitraffic:", err)
		os.Exit(1)
	}
}

// run is the whole life of the daemon: flags, config, log file, database, schema, listen,
// serve, and, when ctx ends, a graceful shutdown that writes every queued call.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("oxitraffic", flag.ContinueOnError)
	flags.SetOutput(stderr)
	check := flags.Bool("check", false, "check the configuration and the database connection, then exit")
	showVersion := flags.Bool("version", false, "print the version and exit")
	healthcheck := flags.Bool("healthcheck", false, "ask the daemon at socket_address for /healthz: exit 0 if it answers ok, 1 otherwise")
	importLogs := flags.Bool("import", false, "import the access logs named after the flags (nginx or Apache, combined or common, plain or .gz, - for stdin), then exit")
	unimportRun := flags.Int64("unimport", 0, "remove the calls that the import of this number added, then exit")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 && !*importLogs {
		return fmt.Errorf("unexpected argument %q", flags.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "oxitraffic", version)
		return nil
	}

	dataDir := getenv("OXITRAFFIC_DATA_DIR")
	if dataDir == "" {
		return errors.New("OXITRAFFIC_DATA_DIR is not set: set it to the folder that holds config.yaml")
	}
	cfg, err := loadConfig(dataDir, getenv)
	if err != nil {
		return err
	}
	if *healthcheck {
		return runHealthcheck(ctx, cfg, stdout)
	}
	if *importLogs {
		return runImport(ctx, cfg, flags.Args(), os.Stdin, stdout, stderr)
	}
	if *unimportRun != 0 {
		return runUnimport(ctx, cfg, *unimportRun, stdout, stderr)
	}
	imagePath := filepath.Join(dataDir, cfg.ResponseFilename)
	image, err := os.ReadFile(imagePath)
	if err != nil {
		return fmt.Errorf("response image (config key response_filename): %w", err)
	}
	if *check {
		return runCheck(ctx, cfg, stdout, stderr)
	}

	sink, err := openLogSink(filepath.Join(dataDir, logFileName), stderr)
	if err != nil {
		return err
	}
	defer sink.close()
	// Caught from here on, so that a SIGHUP right after the start does not end the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log := slog.New(slog.NewTextHandler(sink, nil))
	log.Info("starting", "version", version, "data_dir", dataDir,
		"db_host", cfg.DB.Host, "db_port", cfg.DB.Port, "db_name", cfg.DB.Database, "db_user", cfg.DB.Username)

	st, err := openStore(ctx, cfg, getenv, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return err
	}

	srv := newServer(cfg, st, image, log)
	ln, err := net.Listen("tcp", cfg.SocketAddress)
	if err != nil {
		log.Error("start failed", "err", err)
		return fmt.Errorf("listen (config key socket_address): %w", err)
	}
	httpSrv := newHTTPServer(srv.routes(), log)
	serveErr := make(chan error, 2)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	var metricsSrv *http.Server
	if cfg.MetricsAddress != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddress)
		if err != nil {
			httpSrv.Close()
			log.Error("start failed", "err", err)
			return fmt.Errorf("listen (config key metrics_address): %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /metrics", srv.handleMetrics)
		metricsSrv = newHTTPServer(mux, log)
		go func() { serveErr <- metricsSrv.Serve(mln) }()
		log.Info("metrics", "address", "http://"+mln.Addr().String()+"/metrics")
	}

	log.Info("listening", "address", "http://"+ln.Addr().String(), "tracked", cfg.TrackedBaseURL)
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	sdNotify(getenv, "READY=1")

	// systemd's watchdog runs from here on, when the start is complete.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go watchdog(runCtx, getenv, st.writerStuckFor)

	var result error
	for wait := true; wait; {
		select {
		case <-ctx.Done():
			wait = false
		case err := <-serveErr:
			log.Error("serve failed", "err", err)
			result, wait = fmt.Errorf("serve: %w", err), false
		case <-hup:
			if err := sink.reopen(); err != nil {
				log.Error("SIGHUP", "err", err)
			} else {
				log.Info("log file reopened")
			}
		}
	}

	sdNotify(getenv, "STOPPING=1")
	log.Info("stopping", "queued_calls", st.queueLen())
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Shutdown.Timeout))
	defer cancel()
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Error("shutdown: requests still running at the deadline", "err", err)
	}
	if metricsSrv != nil {
		metricsSrv.Shutdown(sctx)
	}
	srv.verify.close(sctx)
	if err := st.close(sctx); err != nil {
		log.Error("shutdown: calls lost", "err", err)
		result = errors.Join(result, err)
	}
	log.Info("stopped", "calls_written", st.stats().written)
	return result
}

// openStore connects the daemon's three pools, applies the schema, brings the rollups up to
// date (telling systemd, during a long rebuild, that the start goes on) and starts the
// store.
func openStore(ctx context.Context, cfg Config, getenv func(string) string, log *slog.Logger) (*store, error) {
	startDB, err := openDB(ctx, cfg.DB, startPool, log)
	if err != nil {
		return nil, err
	}
	defer startDB.Close()
	progress := func() {
		// Each message gives the start this much more time from now on.
		sdNotify(getenv, fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", (3*progressEvery).Microseconds()))
	}
	// On a large database of the original, the schema builds an index.
	stop := whileRunning(progress)
	err = applySchema(ctx, startDB)
	stop()
	if err != nil {
		return nil, err
	}
	if err := syncRollups(ctx, startDB, cfg.parsed.loc, progress, log); err != nil {
		return nil, err
	}
	readDB, err := openDB(ctx, cfg.DB, readPool, log)
	if err != nil {
		return nil, err
	}
	// Held until the store is closed, after its last flush: no start rebuilds the rollups
	// for another zone meanwhile.
	zoneCtx, releaseZone := context.WithCancel(context.WithoutCancel(ctx))
	if err := holdZone(zoneCtx, readDB, cfg.parsed.loc, log); err != nil {
		releaseZone()
		readDB.Close()
		return nil, err
	}
	writeDB, err := openDB(ctx, cfg.DB, writePool, log)
	if err != nil {
		releaseZone()
		readDB.Close()
		return nil, err
	}
	st, err := newStore(ctx, startDB, readDB, writeDB, cfg.QueueSize, cfg.parsed.loc, log)
	if err != nil {
		releaseZone()
		readDB.Close()
		writeDB.Close()
		return nil, err
	}
	st.releaseOnClose(releaseZone)
	st.followPeers()
	return st, nil
}

// newServer builds the handlers' state from the configuration that loadConfig parsed.
func newServer(cfg Config, st *store, image []byte, log *slog.Logger) *server {
	p := cfg.parsed
	cached, uncached := imageHeaders(p.contentType, time.Duration(cfg.Dedup.Window))
	return &server{
		store:         st,
		verify:        newVerifier(p.base, cfg.Verify, st, log),
		dedup:         newDedupSet(time.Duration(cfg.Dedup.Window), cfg.Dedup.MaxEntries, time.Now()),
		log:           log,
		loc:           p.loc,
		trusted:       p.trusted,
		ignore:        p.ignore,
		hosts:         append([]string{p.base.Hostname()}, p.referrers...),
		bots:          cfg.IgnoreBots,
		dnt:           cfg.RespectDNT,
		site:          p.siteName,
		metrics:       cfg.MetricsAddress == "",
		badgeLabel:    cfg.BadgeLabel,
		image:         image,
		imageHdr:      cached,
		noStoreHdr:    uncached,
		outcomeHeader: cfg.OutcomeHeader,
	}
}

// newHTTPServer returns an http.Server whose timeouts bound slow and idle clients.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          serverErrorLog(log),
	}
}

// runCheck connects to the database and applies nothing: -check's whole work.
func runCheck(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg.DB.ConnectTimeout = Duration(min(time.Duration(cfg.DB.ConnectTimeout), 5*time.Second))
	db, err := openDB(ctx, cfg.DB, startPool, log)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stdout, "configuration ok; PostgreSQL reached (database %s on %s port %d)\n", cfg.DB.Database, cfg.DB.Host, cfg.DB.Port)
	return nil
}
