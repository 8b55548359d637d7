#!/usr/bin/env bash
# Installs what building and testing Octo needs on a fresh Debian machine, and nothing when it is
# already there: the wasm32-wasip2 Rust target, and the Debian packages the tests use as real peers.
# Sourced by scripts/test.sh and scripts/demo.sh.
set -euo pipefail

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2
fi

# command -> Debian package
declare -A needed=([bash]=bash [curl]=curl [ps]=procps [openssl]=openssl [base64]=coreutils
    [squid]=squid [tinyproxy]=tinyproxy [htpasswd]=apache2-utils)
missing=()
for cmd in "${!needed[@]}"; do
    # squid and tinyproxy live in /usr/sbin, which a non-root PATH may lack.
    command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd || -x /usr/bin/$cmd ]] || missing+=("${needed[$cmd]}")
done
# PostgreSQL's tools are not on PATH: the store's tests start a private cluster with them (tests/support).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A second plugin toolchain, to prove components from other languages run (host/octo/tests/other_languages.rs).
if ! command -v componentize-py >/dev/null 2>&1; then
    echo "setup: installing componentize-py from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check componentize-py==0.25.1 \
        || echo "setup: componentize-py could not be installed; the Python plugin test will be skipped" >&2
fi

# A third: JavaScript steps with componentize-js from npm (host/octo/tests/other_languages.rs looks here).
OCTO_JS_TOOLS="${OCTO_JS_TOOLS:-$HOME/.cache/octo-componentize-js}"
if ! [[ -x "$OCTO_JS_TOOLS/node_modules/.bin/componentize-js" ]]; then
    if command -v npm >/dev/null 2>&1; then
        echo "setup: installing @bytecodealliance/componentize-js from npm into $OCTO_JS_TOOLS" >&2
        mkdir -p "$OCTO_JS_TOOLS"
        npm install --prefix "$OCTO_JS_TOOLS" --no-audit --no-fund --silent \
            @bytecodealliance/componentize-js@0.23.0 \
            || echo "setup: componentize-js could not be installed; the JavaScript plugin test will be skipped" >&2
    else
        echo "setup: no npm (Node.js 20 or later); the JavaScript plugin test will be skipped" >&2
    fi
fi

# One target directory outside the clone, so a fresh clone (CI) reuses compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/octo-target}"
HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export HOST_TRIPLE
