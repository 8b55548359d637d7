#!/usr/bin/env bash
# The main job: a local demo on loopback, nothing leaves the machine.
#   registry-mock (signed steps feed, community library, vendor endpoints) -> octo configured to use it
#   -> plugins installed from the feed, a community template from the library -> the server and two
#   tentacles (one listening, one polling) -> a deployment step on both -> the outbound report ->
#   air-gapped mode, proven by registry-mock's empty request log.
#   bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# The same build as the test suite (`cargo test --workspace`): selecting packages with -p would resolve
# dependency features differently and rebuild wasmtime and its dependencies for nothing.
cargo test --workspace --locked --no-run
BIN="$CARGO_TARGET_DIR/debug"
PLUGINS="${OCTO_PLUGINS_TARGET_DIR:-$CARGO_TARGET_DIR/octo-plugins}/wasm32-wasip2/release"
octo() { "$BIN/octo" "$@"; }
tentacle() { "$BIN/tentacle" "$@"; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export OCTO_HOME="$WORK/octo"

heading() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# wait_for FILE PATTERN: until a line of FILE matches PATTERN (10 s at most).
wait_for() {
    for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "timed out waiting for '$2' in $1" >&2
    cat "$1" >&2
    return 1
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

heading "Publishing the built-in plugins to a signed steps feed (one command)"
"$BIN/registry-mock" publish --out "$WORK/feed" --key "$WORK/feed.key" \
    --plugins "$PLUGINS/run_script.wasm" "$PLUGINS/http_health_check.wasm" "$PLUGINS/hello_step.wasm"

heading "Starting registry-mock on loopback: steps feed, library, update/telemetry/experiences endpoints"
"$BIN/registry-mock" serve --feed "$WORK/feed" --key "$WORK/feed.key" --port 0 --state-dir "$WORK/mock" \
    >"$WORK/mock.ready" 2>"$WORK/mock.log" &
PIDS+=($!)
wait_for "$WORK/mock.ready" url
URL="$(json_field "$WORK/mock.ready" url)"
echo "registry-mock at $URL"

heading "octo configure: the feed (its signing key pinned), the library and the vendor endpoints"
octo configure --feed "$(json_field "$WORK/mock.ready" feedUrl)" \
    --feedPublicKey "$(json_field "$WORK/mock.ready" feedPublicKey)" --libraryFeed "$URL" \
    --updateUrl "$URL/api/update" --telemetryUrl "$URL/api/telemetry" \
    --experiencesUrl "$URL/api/experiences" --dynamicExtensionsUrl "$URL/api/dynamic-extensions"

heading "Installing run-script from the feed (sha256 and signature checked)"
octo plugins install run-script

heading "Syncing the community library and installing a Bash template from it"
octo jobs run community-step-templates
octo library install service-check-running-bash

heading "Starting the server and two tentacles: one listening, one polling"
# Background processes are started from the binaries themselves, so $! is their pid (not a subshell's).
"$BIN/octo" run --listen-address 127.0.0.1 --comms-listen-port 0 >"$WORK/server.out" 2>"$WORK/server.err" &
PIDS+=($!)
wait_for "$WORK/server.out" '^ready$'
SERVER_THUMBPRINT="$(sed -n 's/^thumbprint //p' "$WORK/server.out")"
POLLING_ADDRESS="$(sed -n 's/^polling-listener //p' "$WORK/server.out")"

tentacle --home "$WORK/t-listening" configure --port 0 --listen-address 127.0.0.1 --trust "$SERVER_THUMBPRINT"
"$BIN/tentacle" --home "$WORK/t-listening" agent >"$WORK/t1.out" 2>"$WORK/t1.err" &
PIDS+=($!)
wait_for "$WORK/t1.out" '^ready$'
LISTENING_ADDRESS="$(sed -n 's/^listening //p' "$WORK/t1.out")"

tentacle --home "$WORK/t-polling" configure --noListen
tentacle --home "$WORK/t-polling" poll-server --server-comms-address "https://$POLLING_ADDRESS" \
    --server-thumbprint "$SERVER_THUMBPRINT"
"$BIN/tentacle" --home "$WORK/t-polling" agent >"$WORK/t2.out" 2>"$WORK/t2.err" &
PIDS+=($!)
wait_for "$WORK/t2.out" '^ready$'

octo targets add-listening web-1 --url "https://$LISTENING_ADDRESS" \
    --thumbprint "$(tentacle --home "$WORK/t-listening" show-thumbprint)" --role web
octo targets add-polling web-2 --thumbprint "$(tentacle --home "$WORK/t-polling" show-thumbprint)" --role web
for _ in $(seq 100); do
    [[ "$(octo targets health 2>/dev/null | grep -c healthy)" -ge 2 ]] && break
    sleep 0.1
done
octo targets health

heading "Deploying: the community template, unchanged, on every 'web' tentacle"
octo run-step service-check-running-bash --param services=tentacle --role web

heading "Vendor plugins (WASM components, each allowed only its own endpoint while its switch is on)"
octo check-updates
echo "telemetry would send exactly: $(octo telemetry preview)"
octo jobs run experiences
octo status

heading "What may leave this machine, and why (octo outbound)"
octo outbound

heading "Air-gapped: every vendor destination denied (switches untouched), then every scheduled job run"
octo configure --airGapped=true
# Counted from here: the server's own scheduler re-reads the settings before every job too.
curl -s -X DELETE "$URL/_mock/requests" >/dev/null
octo jobs run --all || true
echo "requests registry-mock received since: $(curl -s "$URL/_mock/requests" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"

heading "Still air-gapped: a step may reach an internal service once 127.0.0.0/8 is an internal network"
octo configure --internalNetworks=127.0.0.0/8
octo run-step http-health-check --param "url=$URL/_mock/requests"
octo outbound | grep -A3 "^Step plugins"
