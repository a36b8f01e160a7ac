# Sourced by scripts/fetch-helm.sh and scripts/fetch-node.sh: the sha256 pins of scripts/checksums.sha256, so that a
# binary the tests and CI run is installed only when it is byte for byte the one committed to. Run from the repo root.
pins=scripts/checksums.sha256

# The sha256 of a file (node's crypto: sha256sum is not everywhere, node is).
file_sha256() {
  node -e 'process.stdout.write(require("node:crypto").createHash("sha256").update(require("node:fs").readFileSync(process.argv[1])).digest("hex"))' "$1"
}

# The sha256 pinned for KEY (<package>@<version>:<file>), or nothing.
pinned_sha256() {
  awk -v key="$1" '$1 !~ /^#/ && $2 == key { print $1; exit }' "$pins"
}

# pinned_current FILE KEY: succeeds when FILE exists and is the pinned one (a cached copy that needs no fetch).
pinned_current() {
  local want
  want=$(pinned_sha256 "$2")
  [ -n "$want" ] && [ -f "$1" ] && [ "$(file_sha256 "$1")" = "$want" ]
}

# install_pinned WHO FETCHED DEST KEY: moves FETCHED to DEST (mode 755) if its sha256 is the one pinned for KEY; else
# deletes it, says why and how to pin on purpose, and fails. Nothing unpinned is ever installed or run.
install_pinned() {
  local who=$1 fetched=$2 dest=$3 key=$4 want got
  want=$(pinned_sha256 "$key")
  got=$(file_sha256 "$fetched")
  if [ -z "$want" ]; then
    rm -f "$fetched"
    echo "$who: $pins pins no sha256 for $key, so it is not installed. The file fetched has sha256 $got; to pin it on purpose, check that release and add this line to $pins:" >&2
    echo "$got  $key" >&2
    return 1
  fi
  if [ "$got" != "$want" ]; then
    rm -f "$fetched"
    echo "$who: $key has sha256 $got, but $pins pins $want: not installed. The registry served other bytes for the same version, or the pin is wrong; to move to another version on purpose, change the version, run this script, check the binary, and commit the line it prints to $pins." >&2
    return 1
  fi
  mkdir -p "$(dirname "$dest")"
  chmod 755 "$fetched"
  mv "$fetched" "$dest"
}
