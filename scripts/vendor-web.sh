#!/usr/bin/env bash
# Refresh the deck.gl bundles that the web view serves (api/web/vendor/) from npm, at the
# versions pinned in js/web-vendor/package.json. Run by hand when changing those versions,
# then commit api/web/vendor/: the page never loads a script from anywhere but our server,
# and a plain `pip install` of twin must carry them.
set -euo pipefail
cd "$(dirname "$0")/../js/web-vendor"
npm install --no-audit --no-fund --loglevel=error
out=../../api/web/vendor
mkdir -p "$out"
rm -rf "$out"/*.js "$out/loaders.gl"
deck=$(node -p 'require("./node_modules/deck.gl/package.json").version')
json=$(node -p 'require("./node_modules/@deck.gl/json/package.json").version')
cp node_modules/deck.gl/dist.min.js "$out/deck.gl-$deck.min.js"
cp node_modules/@deck.gl/json/dist.min.js "$out/deck.gl-json-$json.min.js"
# loaders.gl parses vector tiles and terrain in web workers, by default fetched from unpkg;
# ours sit where the rewritten default (static/vendor/loaders.gl/...) looks for them
loaders=$(node -p 'require("./node_modules/@loaders.gl/mvt/package.json").version')
for module in mvt terrain; do
    mkdir -p "$out/loaders.gl/$module@$loaders/dist"
    cp "node_modules/@loaders.gl/$module/dist/$module-worker.js" "$out/loaders.gl/$module@$loaders/dist/"
done
cp node_modules/deck.gl/LICENSE "$out/LICENSE.deck.gl" 2>/dev/null || true
# no address on a CDN may stay in what the page loads (our users' intranets have no internet)
(cd ../.. && python3 -m api.offline $(find api/web/vendor -name '*.js'))
echo "vendored deck.gl $deck, @deck.gl/json $json and the loaders.gl $loaders workers into api/web/vendor/"
find "$out" -type f | xargs ls -l
