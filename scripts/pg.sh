# A throwaway PostgreSQL for make demo, make bench and anything else outside the tests
# (which start their own from Go). Source it, then:
#   pg_start DIR   makes a cluster in DIR/pg (listening only on a unix socket there, with
#                  PostgreSQL's default durability) and starts it; as root it runs as nobody,
#                  since PostgreSQL refuses to run as root
#   pg_psql ARGS   runs psql as postgres against it
#   pg_stop        stops it (safe to call when it never started)
# PG_BIN is the folder of pg_ctl: on PATH, or Debian's newest.

PG_BIN=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")")
pg_dir=""
as_pg=()

pg_start() {
	pg_dir="$1/pg"
	mkdir -p "$pg_dir"
	if [ "$(id -u)" = 0 ]; then
		chown nobody "$pg_dir"
		as_pg=(runuser -u nobody --)
	fi
	"${as_pg[@]}" "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
	"${as_pg[@]}" "$PG_BIN/pg_ctl" start -w -D "$pg_dir/data" -l "$pg_dir/log" -o "-k $pg_dir -c listen_addresses=''" >/dev/null
}

pg_psql() {
	"$PG_BIN/psql" -h "$pg_dir" -U postgres "$@"
}

pg_stop() {
	[ -n "$pg_dir" ] && [ -d "$pg_dir/data" ] || return 0
	"${as_pg[@]}" "$PG_BIN/pg_ctl" stop -D "$pg_dir/data" -m fast -w >/dev/null 2>&1 || true
}
