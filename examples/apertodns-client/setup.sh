#!/bin/sh
# Builds the official ApertoDNS TypeScript client (apertodns-client 2.1.0, unchanged source) into
# .run/apertodns-client/dist, for check.js and the Envoy end-to-end test.
#
#   examples/apertodns-client/setup.sh [GIT_DIR_OR_URL]
#
# The package is not published on the npm registry reachable here, so its source comes from
# git (default: https://github.com/apertodns/apertodns-client, commit f07dac6). Only the
# TypeScript compiler comes from npm.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
src=${1:-https://github.com/apertodns/apertodns-client}
commit=f07dac6c7298306e1dedc7a809864ae4d9aba573
out="$root/.run/apertodns-client"
rm -rf "$out" && mkdir -p "$out"
if [ -d "$src" ]; then
  git --git-dir="$src" archive "$commit" | tar -x -C "$out"
else
  git clone --quiet "$src" "$out" && git -C "$out" checkout --quiet "$commit"
fi
cd "$out"
npm install --no-save --no-audit --no-fund --ignore-scripts typescript@5 >/dev/null
npx tsc -p . --module commonjs --moduleResolution node --outDir dist \
  --declaration false --declarationMap false --sourceMap false
echo "built $out/dist/index.js"
