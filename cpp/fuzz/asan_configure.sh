#!/usr/bin/env bash
# Configures the AddressSanitizer + UBSan build (make asan-build, asan_pytest.sh):
#   [BUILD_TESTS=ON] cpp/fuzz/asan_configure.sh BUILD_DIR
# GCC like the normal build, the extension always (for asan_pytest.sh) and GoogleTest with
# BUILD_TESTS=ON. -O1 -g1 instead of RelWithDebInfo's -O2 -g: the compile is what makes the
# sanitizer build slow on 2 cores, and -O1 with line tables is what ASan's documentation
# recommends (stack traces keep file:line; nothing is optimised away that ASan should see).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:?build dir}"
python="${PYTHON:-python3}"
cd "$root"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DI2Z_SANITIZE=ON -DI2Z_BUILD_PYTHON=ON -DI2Z_BUILD_TESTS="${BUILD_TESTS:-OFF}" \
  -DPython_EXECUTABLE="$(command -v "$python")" >/dev/null
