#!/bin/sh
# Runs npm on the project's own Node.js: `sh scripts/project-npm.sh ci` (or
# `install`, or any npm command and its arguments).
#
# npm checks every package's `engines` against the Node that runs npm itself
# (npm 11 has no setting to name another), so on a machine whose Node is older
# than package.json's engines (Node 20) a plain `npm install` prints
# EBADENGINE warnings, although every npm script then runs on the project's
# Node: node-linux-<arch>, pinned in optionalDependencies, whose
# node_modules/.bin/node comes first on a script's PATH. This runs npm on that
# same Node, fetched by npx from the npm registry (into npm's cache; nothing
# outside the project is installed). On a platform with no such package it is
# a plain `npm`.
set -eu
cd "$(dirname "$0")/.."
arch=$(node -p process.arch)
version=$(node -p "(process.platform === 'linux' && require('./package.json').optionalDependencies['node-linux-' + process.arch]) || ''")
if [ -z "$version" ]; then exec npm "$@"; fi
# npx puts the package's bin/node first on PATH, and npm starts with
# `#!/usr/bin/env node`, so the npm below runs on it.
exec npx --yes --package "node-linux-$arch@$version" -- npm "$@"
