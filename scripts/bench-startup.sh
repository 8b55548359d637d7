#!/usr/bin/env bash
# The fixed cost of `octo run-step` (issue 10), end to end, with hyperfine: median of RUNS runs (default
# 40) after a warm-up that fills the compiled-code cache, and the mean CPU time (user + system, with
# the children), which a busy machine disturbs less. Numbers only; nothing is asserted. On a shared
# machine, `nice -n -20 scripts/bench-startup.sh` (as root) keeps other work from preempting the runs.
#
#   scripts/bench-startup.sh [BIN_DIR] [RUNS]
#   scripts/bench-startup.sh --ab OCTO...
#
# `--ab` compares `octo` binaries (e.g. before and after a change) on the trivial Bash template only,
# interleaved: ROUNDS (default 12) rounds in which each binary runs RUNS (default 8) times in turn, then
# the median of all its runs. On a VM whose speed drifts from minute to minute, only interleaved runs
# compare binaries; separate runs of the table below do not.
#
# BIN_DIR holds `octo` (default: $CARGO_TARGET_DIR/debug or target/debug: the workspace's one profile,
# the build the demo and the test suite use). The plugins are those `cargo build` embedded or built
# into $OCTO_PLUGINS_TARGET_DIR (default $CARGO_TARGET_DIR/octo-plugins). The JavaScript component is
# built with componentize-js (`$COMPONENTIZE_JS`, on the PATH, or where scripts/setup.sh installs it);
# without it that row is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

ab=()
if [ "${1:-}" = --ab ]; then
    shift
    [ $# -ge 1 ] || { echo "usage: scripts/bench-startup.sh --ab OCTO..." >&2; exit 2; }
    for b in "$@"; do ab+=("$(realpath "$b")"); done
    set --
fi
bin=${1:-${CARGO_TARGET_DIR:-target}/debug}
runs=${2:-40}
octo=""
[ ${#ab[@]} -gt 0 ] || octo="$(realpath "$bin/octo")"
plugins="${OCTO_PLUGINS_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/octo-plugins}/wasm32-wasip2/release"
command -v hyperfine >/dev/null || { echo "hyperfine is not installed (apt-get install hyperfine)" >&2; exit 1; }
work=$(mktemp -d /tmp/octo-bench-startup-XXXXXX)
trap 'rm -rf "$work"' EXIT
export OCTO_HOME="$work/home"

# A Library-format template (the community library's JSON export) with this syntax and body.
template() { # file syntax body
    python3 - "$@" <<'EOF'
import json, sys
path, syntax, body = sys.argv[1:]
json.dump({
    "Id": "00000000-0000-0000-0000-00000000000" + str(len(syntax)),
    "Name": f"Trivial ({syntax})",
    "Description": "Says hi",
    "ActionType": "Octopus.Script",
    "Version": 1,
    "Properties": {
        "Octopus.Action.Script.Syntax": syntax,
        "Octopus.Action.Script.ScriptSource": "Inline",
        "Octopus.Action.Script.ScriptBody": body,
    },
    "Parameters": [],
    "$Meta": {"Type": "ActionTemplate"},
}, open(path, "w"))
EOF
}
template "$work/bash.json" Bash 'echo hi'
template "$work/python.json" Python 'print("hi")'

if [ ${#ab[@]} -gt 0 ]; then
    rounds=${ROUNDS:-12} each=${RUNS:-8}
    for i in "${!ab[@]}"; do
        # Each binary its own home; two warm-up runs fill its compiled-code cache.
        OCTO_HOME="$work/home-$i" "${ab[$i]}" run-step "$work/bash.json" >/dev/null
        OCTO_HOME="$work/home-$i" "${ab[$i]}" run-step "$work/bash.json" >/dev/null
    done
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $rounds rounds x $each runs, interleaved"
    for _ in $(seq "$rounds"); do
        for i in "${!ab[@]}"; do
            OCTO_HOME="$work/home-$i" hyperfine -N --warmup 1 --runs "$each" --style none \
                --export-json "$work/r.json" "${ab[$i]} run-step $work/bash.json" >/dev/null 2>&1
            python3 -c 'import json, sys; print(*json.load(open(sys.argv[1]))["results"][0]["times"], sep="\n")' \
                "$work/r.json" >>"$work/times-$i"
        done
    done
    printf '%-50s %10s %10s %10s\n' "octo (trivial Bash template)" "median ms" "p10 ms" "min ms"
    for i in "${!ab[@]}"; do
        python3 - "${ab[$i]}" "$work/times-$i" <<'EOF'
import statistics, sys
t = sorted(float(x) * 1e3 for x in open(sys.argv[2]) if x.strip())
print(f"{sys.argv[1][-50:]:<50} {statistics.median(t):10.2f} {t[len(t) // 10]:10.2f} {t[0]:10.2f}")
EOF
    done
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

names=() cmds=()
add() { names+=("$1"); cmds+=("$2"); }
add "octo --version" "$octo --version"
if [ -f "$plugins/fixture_trivial.wasm" ]; then
    add "trivial component" "$octo run-step $plugins/fixture_trivial.wasm"
fi
add "run-script ScriptBody=true" "$octo run-step run-script --param ScriptBody=true"
add "trivial Bash template" "$octo run-step $work/bash.json"
add "trivial Python template" "$octo run-step $work/python.json"

js=""
for c in "${COMPONENTIZE_JS:-}" componentize-js "$HOME/.cache/octo-componentize-js/node_modules/.bin/componentize-js"; do
    if [ -n "$c" ] && "$c" --version >/dev/null 2>&1; then js=$c; break; fi
done
if [ -n "$js" ]; then
    (cd plugins/examples/js-step && "$js" step.js -w ../../../wit -n step -o "$work/js_raw.wasm" >/dev/null)
    "$octo" plugins pack "$work/js_raw.wasm" --manifest plugins/examples/js-step/manifest.json -o "$work/js.wasm" >/dev/null
    add "trivial JS component" "$octo run-step $work/js.wasm --param name=Ada"
else
    echo "skipping the JS component: componentize-js is not installed (scripts/setup.sh installs it)" >&2
fi
add "bash -c 'echo hi'" "bash -c 'echo hi'"
# The floor under any step on this machine: starting a process at all, and Bash in a new PID
# namespace (what a script step needs at least; `unshare` is one more process start). On a VM each
# glibc process start also pays for the CPUID instructions the dynamic loader runs, which trap.
add "true (a process start)" "true"
for ns in "--pid --fork" "--user --map-root-user --pid --fork"; do
    if unshare $ns true 2>/dev/null; then
        add "bash -c, new PID namespace" "unshare $ns bash -c 'echo hi'"
        break
    fi
done
# The interpreter alone, as the step finds it on the PATH (a pyenv shim costs far more than python3).
add "python3 -c 'print(\"hi\")'" "python3 -c 'print(\"hi\")'"

# Warm-up: fills the compiled-code cache and shows each command works.
for i in "${!cmds[@]}"; do
    if ! bash -c "${cmds[$i]}" >"$work/out" 2>&1; then
        echo "${names[$i]} failed:" >&2; cat "$work/out" >&2; exit 1
    fi
done

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $runs runs each"
printf '%-36s %10s %10s %10s %10s\n' "what" "median ms" "min ms" "max ms" "CPU ms"
for i in "${!cmds[@]}"; do
    hyperfine -N --warmup 3 --runs "$runs" --style none --export-json "$work/r.json" "${cmds[$i]}" >/dev/null 2>&1
    python3 - "${names[$i]}" "$work/r.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))["results"][0]
cpu = (r['user'] + r['system']) * 1e3  # mean user + system time, the process and its children
print(f"{sys.argv[1]:<36} {r['median']*1e3:10.2f} {r['min']*1e3:10.2f} {r['max']*1e3:10.2f} {cpu:10.2f}")
EOF
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
