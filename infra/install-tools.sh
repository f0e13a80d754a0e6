#!/usr/bin/env bash
# Installs the Python dev tooling (moto server, boto3, cfn-lint, aws-sam-cli, stripe, PyYAML) into
# <repo>/.venv from the pins in infra/requirements-dev.txt. Idempotent: a re-run with unchanged pins
# returns at once. Needs python3 (3.10+) with pip and access to PyPI only. Also installs Debian's
# chromium and chromium-driver (apt, as root) when missing, for the dashboard's browser tests.
#
#   infra/install-tools.sh            dev/test tools
#   infra/install-tools.sh --deploy   also cargo-lambda + ziglang (for `sam build`; not used by tests)
#
# Env: PYTHON (interpreter, default python3), VENV_DIR (default <repo>/.venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$ROOT/infra"
VENV="${VENV_DIR:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

deploy=0
for arg in "$@"; do
  case "$arg" in
    --deploy) deploy=1 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "install-tools: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { echo "install-tools: $*" >&2; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  say "$PYTHON not found; install python3 (3.10+) first"
  exit 1
fi

# A venv is usable when its interpreter runs and is the same minor version as $PYTHON.
want_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv_ok() {
  [ -x "$VENV/bin/python" ] &&
    [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want_version" ] &&
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

create_venv() {
  rm -rf "$VENV"
  if "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    return 0
  fi
  # Debian without python3-venv has no ensurepip: make a bare venv and bootstrap pip from its wheel.
  say "ensurepip unavailable; bootstrapping pip into the venv from PyPI"
  rm -rf "$VENV"
  "$PYTHON" -m venv --without-pip "$VENV"
  local tmp
  tmp="$(mktemp -d)"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" pip
  local wheel
  wheel="$(ls "$tmp"/pip-*.whl | head -n1)"
  "$VENV/bin/python" "$wheel/pip" install -q --disable-pip-version-check --no-index "$wheel"
  rm -rf "$tmp"
}

# Installs one requirements file unless its stamp (hash of the file + interpreter version) matches.
install_reqs() {
  local reqs="$1" stamp="$VENV/.stamp-$(basename "$1" .txt)"
  local digest
  digest="$( (cat "$reqs"; echo "$want_version") | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    return 0
  fi
  say "installing $(basename "$reqs") into ${VENV#"$ROOT"/} (about a minute the first time)"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -r "$reqs"
  echo "$digest" >"$stamp"
}

if ! venv_ok; then
  say "creating ${VENV#"$ROOT"/} with $PYTHON ($want_version)"
  create_venv
fi

install_reqs "$INFRA/requirements-dev.txt"
if [ "$deploy" = 1 ]; then
  install_reqs "$INFRA/requirements-deploy.txt"
fi

# The stamp says the pins were installed; make sure the entry points really are there.
for tool in moto_server cfn-lint sam; do
  if [ ! -x "$VENV/bin/$tool" ]; then
    say "$tool missing from the venv; reinstalling"
    rm -f "$VENV/.stamp-requirements-dev"
    install_reqs "$INFRA/requirements-dev.txt"
    break
  fi
done
if [ "$deploy" = 1 ] && [ ! -x "$VENV/bin/cargo-lambda" ]; then
  rm -f "$VENV/.stamp-requirements-deploy"
  install_reqs "$INFRA/requirements-deploy.txt"
fi

# Headless Chromium and its WebDriver, for the dashboard's browser tests (tests/tests/it/browser.rs), from
# Debian's packages. Quiet when both are there; needs root (or an existing install) otherwise.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium and chromium-driver (Debian packages) for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver fonts-dejavu-core >/dev/null
  else
    say "chromium/chromedriver missing and apt-get unusable here: the browser tests will fail;" \
      "install the Debian packages chromium and chromium-driver"
  fi
fi
