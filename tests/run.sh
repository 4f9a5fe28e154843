#!/usr/bin/env bash
# Builds stackproc and runs every test, twice: a Release build with warnings as errors, then an
# AddressSanitizer + UndefinedBehaviorSanitizer build. Installs the Debian 12 dependencies first.
# Then the job manager's concurrency and executor tests (the SLURM executor's against a fake
# cluster included) under ThreadSanitizer (only those: oneTBB,
# gRPC and OpenCV are not instrumented), and 60 s of fuzzing of the TIFF reader (tests/fuzz/run.sh,
# clang + libFuzzer, ASan + UBSan).
#   tests/run.sh            all of it
#   tests/run.sh release    only the Release build (quicker while developing)
#   tests/run.sh tsan       only the ThreadSanitizer test
#   tests/run.sh fuzz       only the fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
# zarrita, the tests' independent Zarr v3 reader, from the npm registry (once; tests share it).
/usr/bin/python3 tests/tools/zarr_read.py install

jobs=$(nproc)
asan_flags=(-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG")
configs=("${1:-release}")
[[ $# -eq 0 ]] && configs=(release asan tsan fuzz)

for config in "${configs[@]}"; do
  echo "== $config: starts at ${SECONDS} s"
  if [[ "$config" == fuzz ]]; then
    tests/fuzz/run.sh 60
    continue
  fi
  dir="build/$config"
  flags=(-DSTACKPROC_WERROR=ON)
  case "$config" in
    release) flags+=(-DCMAKE_BUILD_TYPE=Release) ;;
    # The ASan build at -O1 with line tables only (-g1: file:line in every report): half the
    # compile time of -O2 -g, which is most of CI's time. TSan keeps full debug info: its
    # suppressions (tests/tsan.supp) name inlined frames, which -g1 does not record.
    asan) flags+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "${asan_flags[@]}" -DSTACKPROC_SANITIZE=ON) ;;
    tsan) flags+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTACKPROC_TSAN=ON) ;;
    *) echo "unknown configuration '$config' (release, asan, tsan or fuzz)" >&2; exit 2 ;;
  esac
  if [[ "$config" == tsan ]]; then
    echo "== tsan: the job manager under ThreadSanitizer"
    cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
    cmake --build "$dir" -j "$jobs" --target server_job_manager_test server_executor_test \
      server_slurm_executor_test
    for test in server_job_manager_test server_executor_test server_slurm_executor_test; do
      TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp \
        "$dir/tests/$test" --gtest_repeat=3 2>&1 | grep -v '^ts='
    done
    continue
  fi
  echo "== $config: configure and build"
  cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== $config: test (built at ${SECONDS} s)"
  # allocator_may_return_null: the allocation-failure tests ask for more than any machine has.
  ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" -j "$jobs" --output-on-failure
done
