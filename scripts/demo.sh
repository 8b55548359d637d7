#!/usr/bin/env bash
# The main job: a local demo on loopback. Builds Octo, publishes the built-in plugins to a steps feed
# served by registry-mock, and runs deployment steps in the plugin sandbox: a real community step
# template, the built-in health check with its outbound request denied (the default) and then granted,
# and the example custom step. Ends with what reached the (mock) vendor endpoints.
#   bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --locked -p octo -p registry-mock
BIN="$CARGO_TARGET_DIR/debug"
PLUGINS="${OCTO_PLUGINS_TARGET_DIR:-$CARGO_TARGET_DIR/octo-plugins}/wasm32-wasip2/release"

WORK="$(mktemp -d)"
MOCK_PID=""
cleanup() {
    [[ -n "$MOCK_PID" ]] && kill "$MOCK_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export OCTO_HOME="$WORK/octo-home"

heading() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

heading "Publishing the built-in plugins to a signed steps feed (one command)"
"$BIN/registry-mock" publish --out "$WORK/feed" \
    --plugins "$PLUGINS/run_script.wasm" "$PLUGINS/http_health_check.wasm" "$PLUGINS/hello_step.wasm"

heading "Starting registry-mock on loopback"
"$BIN/registry-mock" serve --feed "$WORK/feed" --port 0 --state-dir "$WORK/mock" >"$WORK/mock.ready" 2>"$WORK/mock.log" &
MOCK_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/mock.ready" ]] && break; sleep 0.05; done
URL="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$WORK/mock.ready")"
echo "registry-mock at $URL"

heading "A community step template, unchanged (HTTP - Test URL (Bash)): its own curl to a local URL"
"$BIN/octo" run-step ../shared/library/bash-http-test-url.json \
    --param "uri=$URL/api/update?version=0.1.0&installationId=demo" --param timeout=10

heading "The built-in http-health-check: outbound is denied unless granted (air-gapped by default)"
"$BIN/octo" run-step http-health-check --param "url=$URL/api/experiences?version=0.1.0" --param timeoutSeconds=5 \
    || echo "(exit code $?: denied, as expected)"

heading "The same step with the destination granted by an administrator"
"$BIN/octo" run-step http-health-check --param "url=$URL/api/experiences?version=0.1.0" --allow-outbound "$URL"

heading "A custom step written with the plugin SDK (plugins/examples/hello-step)"
"$BIN/octo" run-step "$PLUGINS/hello_step.wasm" --param name=Octo

heading "What reached the mock vendor endpoints (registry-mock's request log)"
curl -s "$URL/_mock/requests" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    print("  %-6s %s" % (r["method"], r["path"]))'
