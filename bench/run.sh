#!/usr/bin/env bash
# make bench: OxiTraffic's /call under load, against a bare net/http handler serving the
# same image, measured in the same run on this machine. Everything runs on 127.0.0.1 and
# stops by itself. BENCH_DURATION (default 5s a run), BENCH_ROUNDS (default 5) and
# BENCH_CONNECTIONS (default 64) tune it.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-5s}
CONNS=${BENCH_CONNECTIONS:-64}
BARE_PORT=8390 SITE_PORT=8391 DAEMON_PORT=8392
. scripts/pg.sh

work=$(mktemp -d /tmp/oxitraffic-bench-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	trap - INT TERM HUP EXIT
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	pg_stop
	rm -rf "$work"
}
trap cleanup INT TERM HUP EXIT

# Built as make build builds it: static, without libc.
CGO_ENABLED=0 go build -o "$work/oxitraffic" .
go build -o "$work/bare" ./bench/bare
go build -o "$work/site" ./demo/site

# A PostgreSQL with its default durability (fsync on, synchronous_commit on).
pg_start "$work"
psql() { pg_psql -d postgres -Atq "$@"; }

mkdir "$work/data"
cp demo/counter.svg "$work/data/"
cat >"$work/data/config.yaml" <<YAML
socket_address: "127.0.0.1:$DAEMON_PORT"
response_filename: counter.svg
tracked_base_url: "http://127.0.0.1:$SITE_PORT"
db: {host: "$work/pg", port: 5432, username: postgres, password: "", database: postgres, sslmode: disable}
YAML

"$work/site" -addr "127.0.0.1:$SITE_PORT" >/dev/null & pids+=($!)
"$work/bare" -addr "127.0.0.1:$BARE_PORT" -image demo/counter.svg & pids+=($!)
bare=$!
OXITRAFFIC_DATA_DIR="$work/data" "$work/oxitraffic" >"$work/daemon.out" 2>&1 & pids+=($!)
daemon=$!
until grep -q "listening on" "$work/daemon.out"; do
	if ! kill -0 "$daemon" 2>/dev/null; then
		echo "oxitraffic exited before listening (is port $DAEMON_PORT, $BARE_PORT or $SITE_PORT taken?):" >&2
		cat "$work/daemon.out" >&2
		exit 1
	fi
	sleep 0.1
done
sleep 2
idle_kb=$(awk '/^VmRSS/ {print $2}' /proc/$daemon/status)
# The resident pages split: anonymous (heap, stacks, the Go runtime) and file-backed (the
# mapped pages of the binary itself).
idle_anon_kb=$(awk '/^RssAnon/ {print $2}' /proc/$daemon/status)
idle_file_kb=$(awk '/^RssFile/ {print $2}' /proc/$daemon/status)

# The first call checks the path against the sample site; then the path is known.
curl -s -o /dev/null -A "Mozilla/5.0 (X11) Chrome/120" -H "X-Forwarded-For: 10.255.255.1" "http://127.0.0.1:$DAEMON_PORT/call/blog"

counted() { curl -s "http://127.0.0.1:$DAEMON_PORT/metrics" | awk '/^oxitraffic_calls_total\{outcome="counted"\}/ {print $2}'; }

# cpu PID...: CPU seconds used so far by the processes.
cpu() {
	local total=0 pid
	for pid in "$@"; do
		[ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
	done
	awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}
# pg_pids: the postmaster and its backends.
pg_pids() {
	local master
	master=$(head -n 1 "$work/pg/data/postmaster.pid")
	echo "$master" $(ps -o pid= --ppid "$master")
}

# bench NAME PID URL [SCRIPT [ARG]]: runs wrk once and appends "rps p99_ms errors requests
# server_cpu pg_cpu" to NAME.rounds: the CPU seconds used meanwhile by PID and by PostgreSQL.
bench() {
	local out=$work/$1.txt c0 c1 p0 p1
	c0=$(cpu "$2") p0=$(cpu $(pg_pids))
	wrk -t2 -c"$CONNS" -d"$DURATION" --latency ${4:+-s "$4"} "$3" ${5:+-- "$5"} >"$out"
	c1=$(cpu "$2") p1=$(cpu $(pg_pids))
	awk '
		/Requests\/sec/ {rps=$2}
		/^ +99%/ {v=$2; u=v; gsub(/[0-9.]/,"",u); sub(/[a-z]+$/,"",v); p99 = (u=="us") ? v/1000 : (u=="s") ? v*1000 : v}
		/Non-2xx/ {err+=$NF}
		/Socket errors/ {split($0,a,/[ ,]+/); for (i=1;i<=length(a);i++) if (a[i] ~ /^[0-9]+$/) err+=a[i]}
		/requests in/ {req=$1}
		END {printf "%s %.2f %d %d %s %s\n", rps, p99, err, req, c1 - c0, p1 - p0}' c0="$c0" c1="$c1" p0="$p0" p1="$p1" "$out" >>"$work/$1.rounds"
}

# The four runs take turns, ROUNDS times, so that all of them see the same drift of a shared
# machine; the table shows each one's median round, the median and range of the rounds'
# ratios to the bare handler, and the errors of all rounds.
ROUNDS=${BENCH_ROUNDS:-5}
rows_before=$(psql -c "SELECT count(*) FROM calls")
counted_before=$(counted)
for round in $(seq "$ROUNDS"); do
	# Each scenario's baseline gets the same requests from the same script, so that wrk's
	# own cost (a Lua call per request for new visitors) is the same on both sides.
	bench bare "$bare" "http://127.0.0.1:$BARE_PORT/call/blog" bench/duplicates.lua
	bench duplicates "$daemon" "http://127.0.0.1:$DAEMON_PORT/call/blog" bench/duplicates.lua
	bench bare-new "$bare" "http://127.0.0.1:$BARE_PORT/call/blog" bench/new-visitors.lua "$round"
	bench new-visitors "$daemon" "http://127.0.0.1:$DAEMON_PORT/call/blog" bench/new-visitors.lua "$round"
done
sleep 1
rows=$(( $(psql -c "SELECT count(*) FROM calls") - rows_before ))
acked=$(( $(counted) - counted_before ))
median() { sort -n -k1,1 "$work/$1.rounds" | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) {print $1, $2}'; }
errors() { awk '{s += $3} END {print s}' "$work/$1.rounds"; }
new_req=$(awk '{s += $4} END {print s}' "$work/new-visitors.rounds")
read -r bare_rps bare_p99 < <(median bare)
read -r barenew_rps barenew_p99 < <(median bare-new)
read -r dup_rps dup_p99 < <(median duplicates)
read -r new_rps new_p99 < <(median new-visitors)
metrics=$(curl -s "http://127.0.0.1:$DAEMON_PORT/metrics")
batches=$(awk '/^oxitraffic_write_batch_size_count/ {c=$2} /^oxitraffic_write_batch_size_sum/ {s=$2} END {if (c) printf "%.1f", s/c}' <<<"$metrics")
write_ms=$(awk '/^oxitraffic_write_seconds_count/ {c=$2} /^oxitraffic_write_seconds_sum/ {s=$2} END {if (c) printf "%.2f", 1000*s/c}' <<<"$metrics")
busy_kb=$(awk '/^VmRSS/ {print $2}' /proc/$daemon/status)
# cpu_per_call NAME COLUMN: microseconds of CPU per request over all rounds.
cpu_per_call() { awk -v col="$2" '{c += $col; n += $4} END {printf "%.0f", 1e6 * c / n}' "$work/$1.rounds"; }

# ratios BASE NAME: NAME's req/s over BASE's, round by round: each pair ran back to back, so
# the ratio is less moved by the drift of a shared machine than either number.
ratios() { paste -d' ' "$work/$2.rounds" "$work/$1.rounds" | awk '{printf "%.3f\n", $1 / $7}' | sort -n; }
mid() { awk '{v[NR] = $1} END {printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
spread() { awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f-%.2f", lo, hi}'; }
echo
echo "$(nproc) cores, wrk -t2 -c$CONNS -d$DURATION, $ROUNDS rounds, all on 127.0.0.1, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') with fsync on"
echo "req/s and p99: the median round; × bare: the median of the rounds' ratios to the bare handler run just before"
echo
printf "| %-42s | %9s | %8s | %11s | %8s | %7s |\n" "scenario" "req/s" "× bare" "rounds" "p99 ms" "errors"
printf "|%s|%s|%s|%s|%s|%s|\n" "--------------------------------------------" "-----------" "----------" "-------------" "----------" "---------"
row() { printf "| %-42s | %9.0f | %8s | %11s | %8.2f | %7d |\n" "$@"; }
row "bare net/http, same image, same requests" "$bare_rps" "1.00" "" "$bare_p99" "$(errors bare)"
row "/call duplicates (no write)" "$dup_rps" "$(ratios bare duplicates | mid)" "$(ratios bare duplicates | spread)" "$dup_p99" "$(errors duplicates)"
row "bare, a new X-Forwarded-For per request" "$barenew_rps" "1.00" "" "$barenew_p99" "$(errors bare-new)"
row "/call new visitors (a row each)" "$new_rps" "$(ratios bare-new new-visitors | mid)" "$(ratios bare-new new-visitors | spread)" "$new_p99" "$(errors new-visitors)"
echo
echo "new visitors: $new_req responses, $acked acknowledged as counted, $rows rows written (mean batch $batches calls, $write_ms ms to write one)"
echo "CPU per request: bare handler $(cpu_per_call bare 5) µs (new X-Forwarded-For: $(cpu_per_call bare-new 5) µs); daemon $(cpu_per_call duplicates 5) µs for a duplicate," \
	"$(cpu_per_call new-visitors 5) µs for a new visitor, plus PostgreSQL $(cpu_per_call new-visitors 6) µs"
echo "daemon RSS: idle $((idle_kb / 1024)) MB ($idle_kb kB: $idle_anon_kb kB anonymous, $idle_file_kb kB file-backed), after the load $((busy_kb / 1024)) MB"
# Calls whose answer was under way when wrk stopped are written but not acknowledged.
if [ "$rows" -lt "$acked" ] || [ "$rows" -gt $((acked + ROUNDS * CONNS)) ]; then
	echo "MISMATCH: $rows rows for $acked acknowledged calls"
	exit 1
fi
