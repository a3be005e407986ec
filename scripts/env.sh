# Sourced by the other scripts: the environment every build and test of the project needs.
# Safe to source more than once.

# The CPython the engine embeds must be the one `python3` runs (with its shared library),
# not whatever libpython the linker finds first.
if [[ -z "${PYO3_PYTHON:-}" ]]; then
  if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 is not on PATH; the engine embeds CPython 3 and needs it to build" >&2
    exit 1
  fi
  PYO3_PYTHON=$(python3 -c 'import sys; print(sys.executable)')
  export PYO3_PYTHON
fi
if [[ $("$PYO3_PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("Py_ENABLE_SHARED") or 0)') != 1 ]]; then
  echo "error: $PYO3_PYTHON was built without its shared library (Py_ENABLE_SHARED); the engine cannot embed it" >&2
  exit 1
fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
