#!/usr/bin/env bash
# The one test command: scripts/test.sh
# On a fresh Debian 12 (as root) it installs what the tests need, then runs the whole
# suite (unit + interop against real peers) with the pinned Node 24.
#   1. Debian packages (scripts/install-test-deps.sh; skipped when all are installed)
#   2. npm ci (or npm install without a lockfile); skipped when node_modules matches
#      package.json + package-lock.json and node_modules/.bin/node is Node 24
#   3. npm test  (node --test with node_modules/.bin first in PATH, i.e. Node 24)
# Extra arguments go to `npm test`, e.g. scripts/test.sh -- --test-name-pattern=register
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# Stamp of what node_modules was installed from; `npm ci` wipes node_modules and downloads
# the Node binary again, so it is only re-run when the manifests change.
stamp_file=node_modules/.careflow-install-stamp
stamp=$({ cat package.json; cat package-lock.json 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
node_ok() {
  [[ -x node_modules/.bin/node ]] &&
    [[ $(node_modules/.bin/node -p 'process.versions.node.split(".")[0]' 2>/dev/null) == 24 ]]
}
if [[ -f $stamp_file && $(cat "$stamp_file") == "$stamp" ]] && node_ok; then
  echo "npm: node_modules up to date"
else
  if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
  node_ok || { echo "ERROR: node_modules/.bin/node is not Node 24 after npm install (package 'node@24')" >&2; exit 1; }
  echo "$stamp" >"$stamp_file"
fi

echo "node: $(node_modules/.bin/node --version) ($(cd node_modules/.bin && pwd)/node)"
# npm run puts node_modules/.bin first in PATH, so `node` in the test script is Node 24.
exec npm test "$@"
