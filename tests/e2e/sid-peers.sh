#!/usr/bin/env bash
# Debian sid's snowflake-proxy and snowflake-client (2.10.1 today), unpacked into build/snowflake-sid/
# without installing them, so the end-to-end tests run them beside bookworm's 2.5.1. The binaries
# are static Go programs and run on bookworm. The package index and the .debs come from
# deb.debian.org (a package registry this project may reach); each .deb is checked against the
# SHA256 the index lists. Skipped when they are already there; refresh: rm -rf build/snowflake-sid.
set -euo pipefail
cd "$(dirname "$0")/../.."

DEST=build/snowflake-sid
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [[ -x $DEST/usr/bin/snowflake-proxy && -x $DEST/usr/bin/snowflake-client && -s $DEST/VERSION ]]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -sSf --retry 3 -o "$tmp/Packages.xz" "$MIRROR/dists/sid/main/binary-amd64/Packages.xz"
xz -dc "$tmp/Packages.xz" >"$tmp/Packages"
rm -rf "$DEST"
mkdir -p "$DEST"
for pkg in snowflake-proxy snowflake-client; do
  # The package's stanza: its Version, Filename and SHA256 lines.
  read -r version file sum < <(awk -v p="$pkg" '
    $0 == "Package: " p { on = 1; next }
    on && /^Version: / { v = $2 }
    on && /^Filename: / { f = $2 }
    on && /^SHA256: / { s = $2 }
    on && /^$/ { print v, f, s; exit }' "$tmp/Packages")
  if [[ -z ${file:-} || -z ${sum:-} ]]; then
    echo "sid-peers: $pkg is not in sid's package index" >&2
    exit 1
  fi
  curl -sSf --retry 3 -o "$tmp/$pkg.deb" "$MIRROR/$file"
  echo "$sum  $tmp/$pkg.deb" | sha256sum -c --quiet -
  dpkg-deb -x "$tmp/$pkg.deb" "$DEST"
  echo "$pkg $version" >>"$DEST/VERSION"
done
echo "sid-peers: $(tr '\n' ' ' <"$DEST/VERSION")unpacked into $DEST"
