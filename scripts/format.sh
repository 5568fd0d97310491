#!/usr/bin/env bash
# Formats the project's C++ sources with the repository's .clang-format
# (clang-format from Debian, installed by scripts/setup.sh).
#   scripts/format.sh           rewrite every tracked .cc and .h file in place
#   scripts/format.sh --check   change nothing; list the files that differ and
#                               fail if there are any (scripts/test.sh runs this)
set -euo pipefail
cd "$(dirname "$0")/.."

CHECK=0
case "${1:-}" in
  --check) CHECK=1 ;;
  "") ;;
  -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
  *) echo "format.sh: unknown argument '$1'" >&2; sed -n '2,7p' "$0" >&2; exit 2 ;;
esac
command -v clang-format >/dev/null || { echo "format.sh: clang-format is not installed (scripts/setup.sh)" >&2; exit 1; }

mapfile -t files < <(git ls-files '*.cc' '*.h')
if [ "$CHECK" = 0 ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
differ=()
for f in "${files[@]}"; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || differ+=("$f")
done
if [ "${#differ[@]}" -gt 0 ]; then
  echo "format.sh: ${#differ[@]} file(s) differ from .clang-format (run scripts/format.sh):" >&2
  printf '  %s\n' "${differ[@]}" >&2
  exit 1
fi
