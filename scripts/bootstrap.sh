#!/usr/bin/env bash
# Install Poetry (in its own virtualenv) and the project's dependencies.
#   scripts/bootstrap.sh run    -> what `make run` needs (api + db extras)
#   scripts/bootstrap.sh test   -> every extra and the dev group
#   scripts/bootstrap.sh bench  -> the same plus the peers benchmarks compare against
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-test}"

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python_bin="$(command -v "$candidate")"
      break
    fi
  done
fi
if [ -z "$python_bin" ]; then
  echo "bootstrap: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

poetry_home="${DTPYFW_POETRY_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/dtpyfw/poetry}"
poetry="$poetry_home/bin/poetry"
if [ ! -x "$poetry" ]; then
  echo "bootstrap: installing Poetry into $poetry_home"
  if ! "$python_bin" -m venv "$poetry_home" 2>/dev/null; then
    # Debian/Ubuntu ship venv separately.
    rm -rf "$poetry_home"
    ver="$("$python_bin" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" ||
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    "$python_bin" -m venv "$poetry_home"
  fi
  "$poetry_home/bin/pip" install -q --disable-pip-version-check "poetry>=2.0,<3"
fi
plugin_stamp="$poetry_home/.simple-index-$(sha1sum tools/poetry-simple-index/poetry_simple_index/__init__.py | cut -c1-12)"
if [ ! -e "$plugin_stamp" ]; then
  "$poetry_home/bin/pip" install -q --disable-pip-version-check ./tools/poetry-simple-index
  rm -f "$poetry_home"/.simple-index-*
  touch "$plugin_stamp"
fi

export POETRY_VIRTUALENVS_IN_PROJECT=true
if [ ! -x .venv/bin/python ]; then
  "$poetry" env use -q "$python_bin"
fi
case "$profile" in
  run)  "$poetry" install -q --extras "api db" ;;
  test) "$poetry" install -q --all-extras --with dev ;;
  bench) "$poetry" install -q --all-extras --with dev,bench ;;
  *) echo "bootstrap: unknown profile $profile (run|test|bench)" >&2; exit 2 ;;
esac
echo "bootstrap: ready ($(.venv/bin/python --version), $("$poetry" --version))"
