#!/usr/bin/env bash
# Measurements of issue 12 with real processes on loopback (numbers only; nothing is asserted):
#
#   scripts/bench-tasks.sh fanout [BIN_DIR] [N] [RUNS]   one Bash step on N listening tentacles, end to
#                                                        end (`octo run-step --role fan`), after a warm-up run
#   scripts/bench-tasks.sh resume [BIN_DIR]              SIGKILL the daemon during a chatty step; time from
#                                                        starting it again to the next stored log line
#   scripts/bench-tasks.sh chatty [BIN_DIR] [LINES]      one step printing LINES lines on one listening
#                                                        tentacle: lines/s stored by the server, end to end
#   scripts/bench-tasks.sh steps [BIN_DIR] [STEPS] [TENTACLES] [NODES] [PARALLEL] [KIND]
#                                                        STEPS trivial steps (default 1000), each one task
#                                                        on one of TENTACLES tentacles (10) of KIND
#                                                        (polling, the default, or listening), sent
#                                                        `--detach` by PARALLEL CLIs at once (8) round robin
#                                                        to NODES `octo run --node` processes (1; more need
#                                                        OCTO_BENCH_DATABASE): tasks/s from the first
#                                                        submission to the last task ended. Polling
#                                                        tentacles are spread over the nodes round robin,
#                                                        so most tasks on several nodes are relayed
#
# OCTO_BENCH_DATABASE=postgres://… keeps the tasks in that PostgreSQL database instead of SQLite;
# OCTO_BENCH_DATABASE=private starts a private PostgreSQL cluster for the run (Debian `postgresql`,
# as the `postgres` user when run as root, on a free loopback port; default settings, fsync on).
#
# BIN_DIR holds `octo` and `tentacle` (default: $CARGO_TARGET_DIR/debug or target/debug).
set -euo pipefail

mode=${1:-fanout}
bin=${2:-${CARGO_TARGET_DIR:-target}/debug}
octo="$bin/octo"
tentacle="$bin/tentacle"
work=$(mktemp -d /tmp/octo-bench-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

if [ "${OCTO_BENCH_DATABASE:-}" = private ]; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -x "$pg_bin/initdb" ] || { echo "PostgreSQL is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
    pg_dir="$work/pg"
    mkdir -p "$pg_dir"
    echo octo-bench >"$pg_dir/pw"
    as_pg=()
    if [ "$(id -u)" = 0 ]; then chmod 711 "$work"; chown -R postgres:postgres "$pg_dir"; as_pg=(runuser -u postgres --); fi
    pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U octo --auth=scram-sha-256 --pwfile="$pg_dir/pw" -E UTF8 >/dev/null
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
        -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    stop_pg() { "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true; }
    trap 'stop_pg; cleanup' EXIT
    export OCTO_BENCH_DATABASE="postgres://octo:octo-bench@127.0.0.1:$pg_port/postgres"
fi

now() { date +%s.%N; }
wait_for() { # file word
    for _ in $(seq 1 600); do grep -q "^$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "timed out waiting for $2 in $1" >&2; return 1
}

start_daemon() { # [HOME_NAME] [NODE]
    local name=${1:-octo} node=${2:-}
    if [ -n "${OCTO_BENCH_DATABASE:-}" ]; then
        "$octo" --home "$work/$name" configure --database "$OCTO_BENCH_DATABASE" >/dev/null
    fi
    "$octo" --home "$work/$name" run --listen-address 127.0.0.1 --comms-listen-port 0 ${node:+--node "$node"} \
        >"$work/$name.daemon.out" 2>"$work/$name.daemon.err" &
    daemon=$!
    disown "$daemon"
    pids+=("$daemon")
    wait_for "$work/$name.daemon.out" ready
}

add_tentacles() { # count [polling NODE_HOMES…]: listening, or polling the nodes round robin
    local server count=$1 kind=${2:-listening}
    local node_homes=("${@:3}")
    server=$("$octo" --home "$work/octo" show-thumbprint)
    for i in $(seq 1 "$count"); do
        local home="$work/t$i"
        if [ "$kind" = polling ]; then
            local node=${node_homes[$(( (i - 1) % ${#node_homes[@]} ))]}
            "$tentacle" --home "$home" configure --noListen >/dev/null
            "$tentacle" --home "$home" poll-server --server-thumbprint "$server" \
                --server-comms-address "https://$(sed -n 's/^polling-listener //p' "$work/$node.daemon.out")" >/dev/null
        else
            "$tentacle" --home "$home" configure --port 0 --listen-address 127.0.0.1 --trust "$server" >/dev/null
        fi
        TENTACLE_LOG=warn "$tentacle" --home "$home" agent >"$home.out" 2>/dev/null &
        pids+=("$!")
        disown "$!"
    done
    # Targets are added once: several nodes share them through the store.
    for i in $(seq 1 "$count"); do
        local home="$work/t$i"
        wait_for "$home.out" ready
        if [ "$kind" = polling ]; then
            "$octo" --home "$work/octo" targets add-polling "t$i" \
                --thumbprint "$(sed -n 's/^thumbprint //p' "$home.out")" --role fan >/dev/null
        else
            "$octo" --home "$work/octo" targets add-listening "t$i" \
                --url "https://$(sed -n 's/^listening //p' "$home.out")" \
                --thumbprint "$(sed -n 's/^thumbprint //p' "$home.out")" --role fan >/dev/null
        fi
    done
    if [ "$kind" = polling ]; then
        # Until each polling tentacle has connected.
        for i in $(seq 1 "$count"); do
            for _ in $(seq 1 600); do
                "$octo" --home "$work/octo" targets health "t$i" >/dev/null 2>&1 && break
                sleep 0.1
            done
        done
    fi
}

case "$mode" in
fanout)
    n=${3:-50}
    runs=${4:-5}
    "$octo" --home "$work/octo" show-thumbprint >/dev/null
    start_daemon
    add_tentacles "$n"
    t0=$(now)
    "$octo" --home "$work/octo" run-step run-script --param 'ScriptBody=echo warm' --role fan >/dev/null 2>&1
    t1=$(now)
    echo "first run (dials $n tentacles, sends them the plugin): $(awk "BEGIN{print $t1 - $t0}") s"
    times=()
    for r in $(seq 1 "$runs"); do
        t0=$(now)
        "$octo" --home "$work/octo" run-step run-script --param 'ScriptBody=echo "hello from $(hostname)"' --role fan >"$work/run.out" 2>&1
        t1=$(now)
        ok=$(grep -c 'Step succeeded' "$work/run.out" || true)
        times+=("$(awk "BEGIN{print $t1 - $t0}")")
        echo "run $r: $(awk "BEGIN{print $t1 - $t0}") s, $ok of $n succeeded"
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "median: " a[int((NR+1)/2)] " s over " NR " runs"}'
    ;;
resume)
    "$octo" --home "$work/octo" show-thumbprint >/dev/null
    start_daemon
    add_tentacles 1
    id=$("$octo" --home "$work/octo" run-step run-script --param 'ScriptBody=for i in $(seq 1 400); do echo line $i; sleep 0.01; done' --target t1 --detach)
    count() { "$octo" --home "$work/octo" tasks show "$id" --json | grep -c '"sequence"' || true; }
    while [ "$(count)" -lt 20 ]; do sleep 0.05; done
    kill -9 "$daemon"
    before=$(count)
    sleep 1 # the step goes on journaling on the tentacle meanwhile
    t0=$(now)
    start_daemon
    t_ready=$(now)
    while [ "$(count)" -le "$before" ]; do :; done
    t1=$(now)
    echo "stored lines before the kill: $before"
    echo "daemon start to ready: $(awk "BEGIN{print $t_ready - $t0}") s"
    echo "daemon start to the next stored line: $(awk "BEGIN{print $t1 - $t0}") s"
    "$octo" --home "$work/octo" tasks show "$id" --follow >/dev/null
    echo "task $id: $("$octo" --home "$work/octo" tasks show "$id" --json | grep -m1 '"state"' | tr -d ' ,')," \
        "$("$octo" --home "$work/octo" tasks show "$id" --json | grep -c '"sequence"') lines stored (of 400)"
    ;;
chatty)
    n=${3:-100000}
    "$octo" --home "$work/octo" show-thumbprint >/dev/null
    start_daemon
    add_tentacles 1
    "$octo" --home "$work/octo" run-step run-script --param 'ScriptBody=echo warm' --target t1 >/dev/null 2>&1
    t0=$(now)
    "$octo" --home "$work/octo" run-step run-script --param "ScriptBody=seq 1 $n" --target t1 --json >/dev/null 2>&1
    t1=$(now)
    echo "$n lines in $(awk "BEGIN{print $t1 - $t0}") s end to end: $(awk "BEGIN{printf \"%.0f\", $n / ($t1 - $t0)}") lines/s" \
        "($([ -n "${OCTO_BENCH_DATABASE:-}" ] && echo PostgreSQL || echo SQLite))"
    ;;
steps)
    steps=${3:-1000}
    n=${4:-10}
    nodes=${5:-1}
    parallel=${6:-8}
    kind=${7:-polling}
    if [ "$nodes" -gt 1 ] && [ -z "${OCTO_BENCH_DATABASE:-}" ]; then
        echo "several nodes need OCTO_BENCH_DATABASE=postgres://…" >&2
        exit 2
    fi
    # The other nodes take the first node's identity from the store.
    start_daemon octo node1
    homes=(octo)
    for k in $(seq 2 "$nodes"); do
        start_daemon "octo$k" "node$k"
        homes+=("octo$k")
    done
    add_tentacles "$n" "$kind" "${homes[@]}"
    for k in "" $(seq 2 "$nodes"); do
        "$octo" --home "$work/octo$k" run-step run-script --param 'ScriptBody=echo warm' --role fan >/dev/null 2>&1
    done
    export octo work n nodes
    t0=$(now)
    seq 1 "$steps" | xargs -P "$parallel" -I{} bash -c '
        i={}; k=$(( i % nodes + 1 )); [ "$k" = 1 ] && k=""
        "$octo" --home "$work/octo$k" run-step run-script --param "ScriptBody=echo step $i" --target "t$(( i % n + 1 ))" --detach >/dev/null'
    t_sent=$(now)
    while [ "$("$octo" --home "$work/octo" tasks list --state queued --state running --limit 0 --json | grep -o '"id"' | wc -l)" -gt 0 ]; do
        sleep 0.1
    done
    t1=$(now)
    ok=$("$octo" --home "$work/octo" tasks list --state succeeded --limit 0 --json | grep -o '"run-step"' | wc -l)
    echo "$steps steps on $n $kind tentacles, $nodes node(s) ($([ -n "${OCTO_BENCH_DATABASE:-}" ] && echo PostgreSQL || echo SQLite)), $parallel CLIs at once:" \
        "sent in $(awk "BEGIN{print $t_sent - $t0}") s, all ended after $(awk "BEGIN{print $t1 - $t0}") s:" \
        "$(awk "BEGIN{printf \"%.1f\", $steps / ($t1 - $t0)}") tasks/s; $ok succeeded (with the warm-ups)"
    if [ "$nodes" -gt 1 ]; then
        "$octo" --home "$work/octo" nodes list
    fi
    ;;
*)
    echo "usage: $0 fanout|resume|chatty|steps [BIN_DIR] [N] [RUNS]" >&2
    exit 2
    ;;
esac
