#!/usr/bin/env bash
# Runs each libFuzzer harness for a bounded time, one after the other (used by `make fuzz`).
#   cpp/fuzz/run.sh BUILD_DIR SECONDS [name...]     (default: every harness)
# Working corpora grow in BUILD_DIR/corpus/<name> (the seeds in cpp/fuzz/corpus/<name> and the
# saved findings in cpp/fuzz/regressions/<name> are read, never written); crash, timeout, leak
# and OOM inputs go to BUILD_DIR/artifacts/<name>/; logs to BUILD_DIR/logs/<name>-<time>.log.
# Exits non-zero when a harness reports a finding.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?build dir}"
seconds="${2:?seconds per harness}"
shift 2
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(png png_diff jpeg tiff fits shard zarr_json)

max_len() {
  case "$1" in
    fits) echo 24000 ;;   # FITS files are 2880-byte blocks; the seeds go up to 14 KB
    tiff) echo 12000 ;;
    *) echo 4096 ;;
  esac
}

# C libraries (cfitsio, libtiff) check malloc/calloc for NULL: a request for petabytes that a
# header claims must fail there as it does in production, not abort ASan. Feasible but large
# allocations are still caught by libFuzzer's -malloc_limit_mb (= -rss_limit_mb), and C++
# `new` of an impossible size still aborts.
export ASAN_OPTIONS="allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

status=0
for t in "${targets[@]}"; do
  bin="$build/cpp/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "missing $bin (build with -DI2Z_BUILD_FUZZ=ON)"; exit 2; }
  mkdir -p "$build/corpus/$t" "$build/artifacts/$t" "$build/logs"
  dirs=("$build/corpus/$t" "$here/corpus/$t")
  [ -d "$here/regressions/$t" ] && dirs+=("$here/regressions/$t")
  [ "$t" = png_diff ] && dirs+=("$here/corpus/png")  # the PNG seeds too, and the PNG dictionary
  dict=()
  [ -f "$here/${t%_diff}.dict" ] && dict=(-dict="$here/${t%_diff}.dict")
  log="$build/logs/$t-$(date +%Y%m%d-%H%M%S).log"
  echo "== fuzz_$t: ${seconds}s, log $log"
  "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len="$(max_len "$t")" \
    -artifact_prefix="$build/artifacts/$t/" -print_final_stats=1 "${dict[@]}" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb" "$log" | tail -4
  if [ $rc -ne 0 ]; then
    echo "!! fuzz_$t reported a finding (exit $rc); see $log and $build/artifacts/$t/"
    grep -E "ERROR|runtime error|invariant|SUMMARY" "$log" | head -5
    status=1
  fi
done
exit $status
