#!/usr/bin/env bash
# Runs pytest files against an AddressSanitizer + UBSan build of the extension (make asan-ci,
# make test-asan).
#   cpp/fuzz/asan_pytest.sh BUILD_DIR test_file...
# Builds _core with -DI2Z_SANITIZE=ON into BUILD_DIR (asan_configure.sh), stages it
# with the Python sources in BUILD_DIR/stage, and runs pytest with libasan preloaded (the
# interpreter itself is not instrumented; child interpreters inherit it). A sitecustomize.py in
# the stage removes the editable install's import hook, so that `import images_to_zarr` resolves
# to the staged, instrumented copy in pytest (checked) and in the processes the tests start.
# Leak checking is off: CPython and numpy keep allocations alive until exit by design.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:?build dir}"
shift
python="${PYTHON:-python3}"
cd "$root"
# A build dir configured by `make asan-build` (with GoogleTest) is reused as it is.
[ -f "$build/CMakeCache.txt" ] || cpp/fuzz/asan_configure.sh "$build"
cmake --build "$build" -j "${JOBS:-2}" --target _core
stage="$(cd "$build" && pwd)/stage"
rm -rf "$stage"
mkdir -p "$stage/images_to_zarr"
cp python/images_to_zarr/*.py "$stage/images_to_zarr/"
cp "$build"/_core*.so "$stage/images_to_zarr/"
# Every interpreter started with this PYTHONPATH (pytest, and the CLI / worker / writer processes
# the tests start) drops the editable install's import hook, so it imports the staged copy.
cat >"$stage/sitecustomize.py" <<'PY'
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
PY
libasan="$(${CXX:-g++} -print-file-name=libasan.so)"
[ -f "$libasan" ] || { echo "libasan not found ($libasan)"; exit 2; }
# libstdc++ too: the interpreter does not link it, and ASan's __cxa_throw interceptor must find
# the real one at start-up (else the first C++ exception fails a CHECK and aborts).
libstdcxx="$(${CXX:-g++} -print-file-name=libstdc++.so.6)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONPATH="$stage${PYTHONPATH:+:$PYTHONPATH}"
# The runner is a file, not stdin: spawned worker processes (multiprocessing, Dask) re-run the
# parent's __main__ by path.
runner="$build/run_pytest.py"
cat >"$runner" <<'PY'
import sys
stage = sys.argv[1]
import images_to_zarr._core as core
assert core.__file__.startswith(stage), f"not the ASan build: {core.__file__}"
if __name__ == "__main__":
    print(f"ASan extension: {core.__file__}", flush=True)
    import pytest
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[2:]]))
PY
LD_PRELOAD="$libasan $libstdcxx" "$python" "$runner" "$stage" "$@"
