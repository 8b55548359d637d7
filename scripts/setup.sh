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
    [squid]=squid [tinyproxy]=tinyproxy [htpasswd]=apache2-utils
    [docker-registry]=docker-registry [unshare]=util-linux [ip]=iproute2 [npm]=npm)
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

# Package feed peers (host/packages/tests, host/octo/tests/packages.rs): oras-py pushes OCI artifacts,
# npm's nuget-server 1.11 is a NuGet v3 server (its typed-message dependency pinned to 1.17.0).
if ! python3 -c 'import oras.client' >/dev/null 2>&1; then
    echo "setup: installing oras from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check oras
fi
NUGET_SERVER_DIR=/opt/octo-nuget-server
if [[ ! -x $NUGET_SERVER_DIR/node_modules/.bin/nuget-server ]]; then
    echo "setup: installing nuget-server from npm into $NUGET_SERVER_DIR" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" mkdir -p "$NUGET_SERVER_DIR"
    printf '%s\n' '{"name":"octo-nuget-server","private":true,"dependencies":{"nuget-server":"1.11.0"},"overrides":{"typed-message":"1.17.0"}}' \
        | "${sudo_cmd[@]}" tee "$NUGET_SERVER_DIR/package.json" >/dev/null
    (cd "$NUGET_SERVER_DIR" && "${sudo_cmd[@]}" npm install --silent --no-audit --no-fund)
fi

# One target directory outside the clone, so a fresh clone (CI) reuses compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/octo-target}"
HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export HOST_TRIPLE
