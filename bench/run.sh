#!/usr/bin/env bash
# make bench: OxiTraffic's /call under load, against a bare net/http handler serving the
# same image, measured in the same run on this machine. Everything runs on 127.0.0.1 and
# stops by itself. BENCH_DURATION (default 10s) and BENCH_CONNECTIONS (default 64) tune it.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-64}
BARE_PORT=8390 SITE_PORT=8391 DAEMON_PORT=8392
PG_BIN=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")")

work=$(mktemp -d /tmp/oxitraffic-bench-XXXXXX)
chmod 755 "$work"
mkdir "$work/pg"
pids=()
as_pg=()
if [ "$(id -u)" = 0 ]; then
	chown nobody "$work/pg"
	as_pg=(runuser -u nobody --)
fi
cleanup() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	"${as_pg[@]}" "$PG_BIN/pg_ctl" stop -D "$work/pg/data" -m fast -w >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup INT TERM EXIT

go build -o "$work/oxitraffic" .
go build -o "$work/bare" ./bench/bare
go build -o "$work/site" ./demo/site

# A PostgreSQL with its default durability (fsync on, synchronous_commit on).
"${as_pg[@]}" "$PG_BIN/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
"${as_pg[@]}" "$PG_BIN/pg_ctl" start -w -D "$work/pg/data" -l "$work/pg/log" -o "-k $work/pg -c listen_addresses=''" >/dev/null
psql() { "$PG_BIN/psql" -h "$work/pg" -U postgres -d postgres -Atq "$@"; }

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
OXITRAFFIC_DATA_DIR="$work/data" "$work/oxitraffic" >"$work/daemon.out" 2>/dev/null & pids+=($!)
daemon=$!
until grep -q "listening on" "$work/daemon.out"; do sleep 0.1; done
sleep 2
idle_kb=$(awk '/^VmRSS/ {print $2}' /proc/$daemon/status)

# The first call checks the path against the sample site; then the path is known.
curl -s -o /dev/null -A "Mozilla/5.0 (X11) Chrome/120" -H "X-Forwarded-For: 10.255.255.1" "http://127.0.0.1:$DAEMON_PORT/call/blog"

counted() { curl -s "http://127.0.0.1:$DAEMON_PORT/metrics" | awk '/^oxitraffic_calls_total\{outcome="counted"\}/ {print $2}'; }

# bench NAME URL [SCRIPT]: runs wrk and prints "rps p99_ms errors requests".
bench() {
	local out=$work/$1.txt
	wrk -t2 -c"$CONNS" -d"$DURATION" --latency ${3:+-s "$3"} "$2" >"$out"
	awk '
		/Requests\/sec/ {rps=$2}
		/^ +99%/ {v=$2; u=v; gsub(/[0-9.]/,"",u); sub(/[a-z]+$/,"",v); p99 = (u=="us") ? v/1000 : (u=="s") ? v*1000 : v}
		/Non-2xx/ {err+=$NF}
		/Socket errors/ {split($0,a,/[ ,]+/); for (i=1;i<=length(a);i++) if (a[i] ~ /^[0-9]+$/) err+=a[i]}
		/requests in/ {req=$1}
		END {printf "%s %.2f %d %d\n", rps, p99, err, req}' "$out"
}

read -r bare_rps bare_p99 bare_err _ < <(bench bare "http://127.0.0.1:$BARE_PORT/call/blog")
read -r dup_rps dup_p99 dup_err _ < <(bench duplicates "http://127.0.0.1:$DAEMON_PORT/call/blog" bench/duplicates.lua)
rows_before=$(psql -c "SELECT count(*) FROM calls")
counted_before=$(counted)
read -r new_rps new_p99 new_err new_req < <(bench new-visitors "http://127.0.0.1:$DAEMON_PORT/call/blog" bench/new-visitors.lua)
sleep 1
rows=$(( $(psql -c "SELECT count(*) FROM calls") - rows_before ))
acked=$(( $(counted) - counted_before ))
metrics=$(curl -s "http://127.0.0.1:$DAEMON_PORT/metrics")
batches=$(awk '/^oxitraffic_write_batch_size_count/ {c=$2} /^oxitraffic_write_batch_size_sum/ {s=$2} END {if (c) printf "%.1f", s/c}' <<<"$metrics")
write_ms=$(awk '/^oxitraffic_write_seconds_count/ {c=$2} /^oxitraffic_write_seconds_sum/ {s=$2} END {if (c) printf "%.2f", 1000*s/c}' <<<"$metrics")
busy_kb=$(awk '/^VmRSS/ {print $2}' /proc/$daemon/status)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo
echo "$(nproc) cores, wrk -t2 -c$CONNS -d$DURATION, all on 127.0.0.1, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') with fsync on"
echo
printf "| %-34s | %9s | %8s | %8s | %7s |\n" "scenario" "req/s" "× bare" "p99 ms" "errors"
printf "|%s|%s|%s|%s|%s|\n" "------------------------------------" "-----------" "----------" "----------" "---------"
printf "| %-34s | %9.0f | %8s | %8.2f | %7d |\n" "bare net/http, same image" "$bare_rps" "1.00" "$bare_p99" "$bare_err"
printf "| %-34s | %9.0f | %8s | %8.2f | %7d |\n" "/call duplicates (no write)" "$dup_rps" "$(ratio "$dup_rps" "$bare_rps")" "$dup_p99" "$dup_err"
printf "| %-34s | %9.0f | %8s | %8.2f | %7d |\n" "/call new visitors (a row each)" "$new_rps" "$(ratio "$new_rps" "$bare_rps")" "$new_p99" "$new_err"
echo
echo "new visitors: $new_req responses, $acked acknowledged as counted, $rows rows written (mean batch $batches calls, $write_ms ms to write one)"
# Calls whose answer was under way when wrk stopped are written but not acknowledged.
if [ "$rows" -lt "$acked" ] || [ "$rows" -gt $((acked + CONNS)) ]; then
	echo "MISMATCH: $rows rows for $acked acknowledged calls"
	exit 1
fi
echo "daemon RSS: idle $((idle_kb / 1024)) MB ($idle_kb kB), after the load $((busy_kb / 1024)) MB"
