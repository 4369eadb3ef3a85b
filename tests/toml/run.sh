#!/bin/sh
# Runs the toml-test conformance suite (BurntSushi/toml-lang toml-test) against a
# decoder that speaks its interface, e.g. `tests/toml/run.sh build/san/toml2json`.
#
# The fixtures are not kept in this tree. They are fetched once into build/ from the
# Debian package golang-github-burntsushi-toml-dev, which vendors a copy of toml-test
# (tests/ plus version.go, whose per-version exclusion list selects the TOML 1.0.0
# fixtures). Later runs use the cache and need no network. Our own fixtures under
# tests/toml/valid and tests/toml/invalid run as well.
#
# Environment:
#   TOML_TEST_SUITE  use this toml-test checkout instead (a directory holding tests/ and
#                    either tests/files-toml-1.0.0 or version.go)
#   TOML_TEST_CACHE  cache directory (default: build/toml-test)
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 path/to/toml2json" >&2
    exit 2
fi
decoder=$1
if [ ! -x "$decoder" ]; then
    echo "$0: decoder '$decoder' is not an executable file" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/../.." && pwd)
package=golang-github-burntsushi-toml-dev
pinned_version=1.3.2-2~bpo12+1 # toml-test as vendored by BurntSushi/toml v1.3.2
cache=${TOML_TEST_CACHE:-$root/build/toml-test}
suite=$cache/$package-$(echo "$pinned_version" | tr '~+' '__')

# Downloads the package (pinned version, else the distribution's) into directory $1.
download_package() {
    (cd "$1" && apt-get download "$package=$pinned_version") >"$1/apt.log" 2>&1 && return 0
    (cd "$1" && apt-get download "$package") >>"$1/apt.log" 2>&1 && return 0
    return 1
}

fetch_suite() {
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if ! download_package "$tmp"; then
        # A machine that never ran `apt-get update` has no package lists yet.
        if [ "$(id -u)" = 0 ]; then
            echo "toml-test: refreshing apt package lists" >&2
            apt-get update -qq >>"$tmp/apt.log" 2>&1 || true
        fi
        if ! download_package "$tmp"; then
            cat "$tmp/apt.log" >&2
            echo "$0: cannot download $package (needs the Debian package archive)" >&2
            exit 1
        fi
    fi
    deb=$(ls "$tmp"/*.deb)
    dpkg-deb -x "$deb" "$tmp/root"
    vendored=$tmp/root/usr/share/gocode/src/github.com/BurntSushi/toml/internal/toml-test
    if [ ! -d "$vendored/tests/valid" ] || [ ! -f "$vendored/version.go" ]; then
        echo "$0: $(basename "$deb") does not contain the toml-test fixtures" >&2
        exit 1
    fi
    rm -rf "$suite.partial"
    mkdir -p "$suite.partial"
    cp -R "$vendored/tests" "$vendored/version.go" "$suite.partial/"
    dpkg-deb -f "$deb" Package Version >"$suite.partial/SOURCE"
    rm -rf "$suite"
    mv "$suite.partial" "$suite"
    rm -rf "$tmp"
    trap - EXIT
}

if [ -n "${TOML_TEST_SUITE:-}" ]; then
    suite=$TOML_TEST_SUITE
elif [ ! -f "$suite/SOURCE" ]; then
    mkdir -p "$cache"
    fetch_suite
fi

if [ -f "$suite/SOURCE" ]; then
    echo "toml-test: fixtures from $(tr '\n' ' ' <"$suite/SOURCE")"
fi
# Our own fixtures (tests/toml/valid, tests/toml/invalid) run alongside the suite.
exec python3 "$root/tests/toml/toml_test.py" --toml-version 1.0.0 "$decoder" "$suite" \
    "$root/tests/toml"
