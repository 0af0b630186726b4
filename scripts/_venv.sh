# Shared by scripts/demo, scripts/test and scripts/bench (sourced, not run): the repository's
# .venv with Python >= 3.11, created on first use, and the project installed into it with the
# caller's pip extra (again whenever setup.cfg or pyproject.toml changes).
# The caller sets ROOT (the repository, also the working directory) and EXTRA, then runs
# `ensure_venv; ensure_installed`.

VENV="$ROOT/.venv"
EXTRA="${EXTRA-}"   # pip extra to install, set by the caller: "" = the project alone
MIN_PYTHON="3.11"

die() { printf 'scripts/%s: %s\n' "$(basename -- "$0")" "$*" >&2; exit 1; }

python_ok() {  # python_ok INTERPRETER -> true when it runs and is >= 3.11
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3 python; do
        [[ -n "$candidate" ]] || continue
        command -v -- "$candidate" >/dev/null 2>&1 || continue
        if python_ok "$candidate"; then
            command -v -- "$candidate"
            return 0
        fi
    done
    local found="none"
    if command -v python3 >/dev/null 2>&1; then
        found="$(python3 -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo '?')"
    fi
    die "Python >= $MIN_PYTHON is required (python3 on PATH: $found). Install python3.11 or newer, or set PYTHON=/path/to/python3.11."
}

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]]; then
        python_ok "$VENV/bin/python" && return 0
        die "$VENV uses Python < $MIN_PYTHON or is broken: remove it (rm -rf .venv) and run again."
    fi
    local python
    python="$(find_python)"
    echo "Creating $VENV with $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))" >&2
    if ! "$python" -m venv "$VENV"; then
        rm -rf -- "$VENV"
        die "'$python -m venv' failed. On Debian/Ubuntu: apt-get install python3-venv (or python3.X-venv)."
    fi
}

ensure_installed() {
    local stamp="$VENV/.smartcharge-installed${EXTRA:+-$EXTRA}"
    if [[ -f "$stamp" && ! setup.cfg -nt "$stamp" && ! pyproject.toml -nt "$stamp" ]]; then
        return 0
    fi
    local target="."
    [[ -z "$EXTRA" ]] || target=".[$EXTRA]"
    echo "Installing smartcharge${EXTRA:+[$EXTRA]} into $VENV (quietly; this takes a minute the first time)" >&2
    # -qq keeps pip (and setuptools' build warnings) silent; errors still go to stderr.
    "$VENV/bin/python" -m pip install -qq --disable-pip-version-check -e "$target" \
        || die "pip install -e '$target' failed (see the errors above)."
    touch -- "$stamp"
}
