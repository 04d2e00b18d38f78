#!/usr/bin/env bash
# A private MariaDB server for benches that need server settings of their own
# (the search bench's buffer pool of a quarter of the data): its own datadir,
# loopback port and socket, root without a password, no binary log. The shared
# server on 3306 is never reconfigured.
#
#   bash bench/private_mariadb.sh start [DIR] [PORT]   # default /var/tmp/webadmin-mariadb 3307
#   bash bench/private_mariadb.sh stop  [DIR]
#
# then e.g. BENCH_MARIADB_URL=mysql://root@127.0.0.1:3307/ python -m bench.search_bench --buffer-pool-mb 2304
set -euo pipefail

action=${1:?start or stop}
dir=${2:-/var/tmp/webadmin-mariadb}
port=${3:-3307}

case "$action" in
start)
    if [ -f "$dir/mariadb.pid" ] && kill -0 "$(cat "$dir/mariadb.pid")" 2>/dev/null; then
        echo "a private MariaDB runs on $dir already (pid $(cat "$dir/mariadb.pid"))" >&2
        exit 1
    fi
    mkdir -p "$dir"
    dir=$(realpath "$dir") # mariadbd takes relative paths as relative to its datadir
    data=$dir/data
    if [ ! -d "$data/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$data" --auth-root-authentication-method=normal \
            --skip-test-db --user="$(id -un)" >"$dir/install.log" 2>&1
    fi
    # The shared server's settings where they matter here: utf8mb4, fsync at
    # every commit, O_DIRECT, the default 128 MB pool (SET GLOBAL changes it).
    setsid mariadbd --no-defaults --datadir="$data" --port="$port" --socket="$dir/mariadb.sock" \
        --pid-file="$dir/mariadb.pid" --bind-address=127.0.0.1 --user="$(id -un)" --skip-log-bin \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=1 --innodb-flush-method=O_DIRECT \
        >"$dir/server.log" 2>&1 </dev/null &
    server=$!
    for _ in $(seq 1 600); do
        kill -0 "$server" 2>/dev/null || break # it exited: see its log
        # Ready once the server on the port is this one (not another that holds the port).
        if [ "$(mariadb --no-defaults -uroot -h127.0.0.1 -P"$port" -N -e 'SELECT @@datadir' 2>/dev/null)" = "$data/" ]; then
            echo "private MariaDB on 127.0.0.1:$port (datadir $data, log $dir/server.log)"
            exit 0
        fi
        sleep 0.1
    done
    echo "the private MariaDB did not start; see $dir/server.log" >&2
    exit 1
    ;;
stop)
    [ -f "$dir/mariadb.pid" ] || exit 0 # not running (the server removes its pid file as it stops)
    kill "$(cat "$dir/mariadb.pid")" 2>/dev/null || true
    for _ in $(seq 1 600); do
        [ -f "$dir/mariadb.pid" ] || exit 0
        sleep 0.1
    done
    echo "the private MariaDB did not stop within 60 s; see $dir/server.log" >&2
    exit 1
    ;;
*)
    echo "usage: $0 start|stop [DIR] [PORT]" >&2
    exit 2
    ;;
esac
