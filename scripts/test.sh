#!/usr/bin/env bash
# Checks the format, builds Sluice and runs every test: the unit tests and the
# system tests (ctest; the system tests on the dev broker and on a real Apache
# Kafka), then the unit tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer, and the unit tests of the threaded daemon code
# (coordinator, worker state, HTTP endpoint) under ThreadSanitizer.
#   scripts/test.sh               everything
#   scripts/test.sh --no-sanitize skip the sanitizer passes
set -euo pipefail
cd "$(dirname "$0")/.."

SANITIZE=1
for arg in "$@"; do
  case "$arg" in
    --no-sanitize) SANITIZE=0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$arg'" >&2; sed -n '2,8p' "$0" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh
# The sources are formatted as .clang-format says (scripts/format.sh fixes them).
bash scripts/format.sh --check

# -Werror in the project's own test builds only (a user's build never fails on
# a new compiler's warning).
bash scripts/build.sh build -DSLUICE_WERROR=ON
# The real Kafka broker the system tests also run on (fetched once, through
# Maven; scripts/kafka.sh says what to do if it cannot be fetched).
bash scripts/kafka.sh fetch >/dev/null
(cd build && ctest --output-on-failure --timeout 600)

if [ "$SANITIZE" = 1 ]; then
  cmake -S . -B build-asan -G Ninja -DSLUICE_SANITIZE=ON -DSLUICE_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-asan --target sluice_unit_tests -j "$(nproc)"
  (cd build-asan && ctest --output-on-failure --timeout 900 -L unit)

  cmake -S . -B build-tsan -G Ninja -DSLUICE_TSAN=ON -DSLUICE_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-tsan --target sluice_daemon_unit_tests -j "$(nproc)"
  (cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/../scripts/tsan.supp" \
    ctest --output-on-failure --timeout 900 -L daemon)
fi
