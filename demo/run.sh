#!/usr/bin/env bash
# make demo: a private throwaway PostgreSQL, the sample website and the OxiTraffic daemon,
# all on 127.0.0.1. Ctrl-C stops everything and removes the temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."

DAEMON_PORT=${DEMO_PORT:-8377}
SITE_PORT=${DEMO_SITE_PORT:-8378}
. scripts/pg.sh

work=$(mktemp -d /tmp/oxitraffic-demo-XXXXXX)
chmod 755 "$work"
pids=()

cleanup() {
	trap - INT TERM HUP EXIT
	# Ctrl-C may have stopped whatever reads our output (make demo | tee ...): a failed
	# echo must not stop the cleanup.
	trap '' PIPE
	set +e
	echo
	echo "stopping the demo"
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	pg_stop
	rm -rf "$work"
	exit 0
}
trap cleanup INT TERM HUP EXIT

echo "building"
go build -o "$work/oxitraffic" .
go build -o "$work/site" ./demo/site

echo "starting a throwaway PostgreSQL in $work/pg"
pg_start "$work"
pg_psql -q -c "CREATE DATABASE oxitraffic" >/dev/null

mkdir "$work/data"
cp demo/counter.svg "$work/data/counter.svg"
cat >"$work/data/config.yaml" <<YAML
socket_address: "127.0.0.1:$DAEMON_PORT"
response_filename: counter.svg
tracked_base_url: "http://127.0.0.1:$SITE_PORT"
db:
  host: "$work/pg"
  port: 5432
  username: postgres
  password: ""
  database: oxitraffic
  sslmode: disable
YAML

"$work/site" -addr "127.0.0.1:$SITE_PORT" -counter "http://127.0.0.1:$DAEMON_PORT" >/dev/null &
pids+=($!)
OXITRAFFIC_DATA_DIR="$work/data" "$work/oxitraffic" >"$work/daemon.out" 2>"$work/daemon.err" &
pids+=($!)

until grep -q "listening on" "$work/daemon.out"; do
	if ! kill -0 "${pids[1]}" 2>/dev/null; then
		echo "the daemon did not start:"; cat "$work/daemon.err"; exit 1
	fi
	sleep 0.1
done

cat <<TXT

OxiTraffic is running. Open in a browser:

  the sample blog (each page shows the counter):  http://127.0.0.1:$SITE_PORT/blog
  the plot of a page (or click the counter):      http://127.0.0.1:$DAEMON_PORT/dashboard/plot/blog
  the dashboard:                                  http://127.0.0.1:$DAEMON_PORT/dashboard/
  the counts as JSON:                             http://127.0.0.1:$DAEMON_PORT/api/counts
  one count, for curl:                            curl http://127.0.0.1:$DAEMON_PORT/api/count/blog
  health and metrics:                             http://127.0.0.1:$DAEMON_PORT/healthz  /metrics

Each page counts once per visitor: a reload is a duplicate. A page the blog does not
serve is refused: asked as a browser asks (curl's own User-Agent is a crawler's), this
answers 404:
  curl -i -A 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0' http://127.0.0.1:$DAEMON_PORT/call/invented

The daemon's log: $work/data/oxitraffic.log
Press Ctrl-C to stop everything.
TXT
tail -f "$work/data/oxitraffic.log" &
pids+=($!)
wait "${pids[1]}"
