#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for tests (fast, NOT durable: fsync and friends are off, unless
# PG_DURABLE=1, which keeps PostgreSQL's durable defaults: the benchmarks use that).
#
#   scripts/pg.sh start DIR         initdb into DIR/data, start on a free port, create the
#                                   database inloop_test; prints ONE line: its URL
#   scripts/pg.sh stop DIR          stop it (no error if it is not running)
#   scripts/pg.sh createdb DIR NAME create another database; prints its URL
#   scripts/pg.sh url DIR           print the URL of the running server's inloop_test
#
# Typical use:
#   PGDIR=$(mktemp -d); trap 'scripts/pg.sh stop $PGDIR' EXIT
#   URL=$(scripts/pg.sh start $PGDIR)
#   INLOOP_TEST_PG_URL=$URL cargo test -p inloop-core --test conformance
#
# The server runs as the `postgres` user (initdb refuses root). Everything it writes (data,
# socket, log) lives under DIR. Override the binaries with PG_BIN=/path/to/bin.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-postgres}
DB_NAME=inloop_test

die() { echo "pg.sh: $*" >&2; exit 1; }

# Runs a command as the server's user (directly when we already are that user).
as_pg() {
    if [ "$(id -un)" = "$PG_USER" ]; then
        "$@"
    else
        runuser -u "$PG_USER" -- "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_of() {
    local dir=$1
    [ -f "$dir/port" ] || die "no server was started in $dir (missing $dir/port)"
    cat "$dir/port"
}

url_for() {
    echo "postgres://postgres@127.0.0.1:$1/$2"
}

cmd_start() {
    local dir=${1:-}
    [ -n "$dir" ] || die "usage: pg.sh start DIR"
    [ -x "$PG_BIN/initdb" ] || die "no initdb in $PG_BIN (set PG_BIN)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -e "$dir/data" ] && die "$dir/data already exists; use a fresh directory"
    # The server's user must be able to reach DIR (mktemp -d makes it 0700) and own it.
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown "$PG_USER": "$dir"
    fi

    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    }

    local port
    port=$(free_port)
    echo "$port" >"$dir/port"
    cat >>"$dir/data/postgresql.conf" <<EOF

# pg.sh: a throwaway test server
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
EOF
    if [ "${PG_DURABLE:-0}" != "1" ]; then
        printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$dir/data/postgresql.conf"
    fi

    if ! as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 start >/dev/null 2>&1; then
        echo "pg.sh: PostgreSQL did not start; its log follows" >&2
        cat "$dir/log" >&2 2>/dev/null || true
        exit 1
    fi

    local ready=0
    for _ in $(seq 1 300); do
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [ "$ready" != 1 ]; then
        echo "pg.sh: PostgreSQL not ready after 30 s; its log follows" >&2
        cat "$dir/log" >&2 || true
        exit 1
    fi

    "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB_NAME" >&2 || {
        cat "$dir/log" >&2 || true
        die "createdb $DB_NAME failed"
    }
    url_for "$port" "$DB_NAME"
}

cmd_stop() {
    local dir=${1:-}
    [ -n "$dir" ] || die "usage: pg.sh stop DIR"
    [ -d "$dir/data" ] || return 0
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

cmd_createdb() {
    local dir=${1:-} name=${2:-}
    [ -n "$dir" ] && [ -n "$name" ] || die "usage: pg.sh createdb DIR NAME"
    local port
    port=$(port_of "$dir")
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$name" >&2
    url_for "$port" "$name"
}

cmd_url() {
    local dir=${1:-}
    [ -n "$dir" ] || die "usage: pg.sh url DIR"
    url_for "$(port_of "$dir")" "$DB_NAME"
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    createdb) shift; cmd_createdb "$@" ;;
    url) shift; cmd_url "$@" ;;
    *)
        echo "usage: pg.sh start DIR | stop DIR | createdb DIR NAME | url DIR" >&2
        exit 2
        ;;
esac
