#!/usr/bin/env bash
# Fuzzes the TIFF reader (tests/fuzz/tiff_fuzzer.cc) under ASan + UBSan for a bounded time:
# builds it with clang in build/fuzz, seeds it with every layout tests/core/tiff_variants.py
# writes (plus what earlier runs here found), and fails on any crash, sanitizer report, leak or
# hang. A finding is kept in build/fuzz/findings/: replay it with
#   build/fuzz/tests/fuzz/tiff_fuzzer build/fuzz/findings/crash-...
# and add it to the regression tests.
#   tests/fuzz/run.sh [SECONDS]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
dir=build/fuzz
cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSTACKPROC_FUZZ=ON -DSTACKPROC_WERROR=ON -DSTACKPROC_BUILD_TESTS=OFF >/dev/null
cmake --build "$dir" -j "$(nproc)" --target tiff_fuzzer
mkdir -p "$dir/seeds" "$dir/corpus" "$dir/findings"
/usr/bin/python3 tests/core/tiff_variants.py "$dir/seeds" >/dev/null
rm -f "$dir"/seeds/*.raw
echo "== fuzz: tiff_fuzzer for ${seconds}s over $(ls "$dir/seeds" | wc -l) seed files"
# -rss_limit_mb: the reader's own caps keep every allocation far below this; going over is a bug.
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$dir/tests/fuzz/tiff_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$dir/findings/" -print_final_stats=1 "$dir/corpus" "$dir/seeds" \
  2>"$dir/fuzz.log" || { tail -60 "$dir/fuzz.log"; echo "fuzz: FAILED (finding in $dir/findings)"; exit 1; }
grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^Done' "$dir/fuzz.log" || true
echo "fuzz: no finding"
