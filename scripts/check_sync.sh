#!/usr/bin/env bash
# Fail when the package, the notebooks' cleanliness or README.md differ from what the notebooks make.
# Works on a copy, so it never changes your working tree.
set -uo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate 2>/dev/null || true
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r nbs hanorec settings.ini setup.py "$tmp"/
for f in pyproject.toml _quarto.yml; do [ -f "$f" ] && cp "$f" "$tmp"/; done
[ -f README.md ] && cp README.md "$tmp"/
status=0
(cd "$tmp" && nbdev_export) >/dev/null || { echo "nbdev_export failed" >&2; exit 1; }
if ! diff -rq --exclude=__pycache__ hanorec "$tmp/hanorec" >"$tmp/export.diff"; then
  echo "FAIL: hanorec/ differs from what the notebooks export:" >&2; sed 's/^/  /' "$tmp/export.diff" >&2
  echo "  fix: run 'nbdev_export' (and 'nbdev_clean'), then commit nbs/ and hanorec/ together." >&2
  status=1
fi
(cd "$tmp" && nbdev_clean) >/dev/null || { echo "nbdev_clean failed" >&2; exit 1; }
if ! diff -rq nbs "$tmp/nbs" >"$tmp/clean.diff"; then
  echo "FAIL: some notebooks are not clean (nbdev_clean would change them):" >&2; sed 's/^/  /' "$tmp/clean.diff" >&2
  echo "  fix: run 'nbdev_clean' and commit the notebooks." >&2
  status=1
fi
(cd "$tmp" && python -c 'from hanorec.docsite import write_readme; write_readme("nbs/index.ipynb", "README.md")') || exit 1
if ! cmp -s README.md "$tmp/README.md"; then
  echo "FAIL: README.md differs from what nbs/index.ipynb makes." >&2
  echo "  fix: run 'hanorec docs --readme' and commit README.md." >&2
  status=1
fi
[ $status -eq 0 ] && echo "ok: hanorec/, the notebooks and README.md match what the notebooks make"
exit $status
