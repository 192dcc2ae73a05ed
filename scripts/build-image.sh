#!/usr/bin/env bash
# Builds the mammo-node image WITHOUT a container daemon: debootstrap a Debian bookworm root
# filesystem, run the Dockerfile's own steps in it (image/install.sh, image/apt-packages.txt)
# by chroot, and pack it with umoci into an OCI image layout:
#
#   scripts/build-image.sh            -> var/image/oci (tag mammo-node version), var/image/build.json
#
# Cached: the base layer (Debian packages + venv) is rebuilt only when its inputs change
# (image/apt-packages.txt, image/install.sh, the wheels pyproject's dependencies resolve to
# under constraints.txt, the mirror); the app layer only when the source tree or the
# Dockerfile does. Needs root (chroot), debootstrap and umoci (Debian).
# Environment: IMAGE_DIR (var/image), MIRROR (the Debian mirror apt uses here), PYTHON (the
# interpreter whose pip downloads the wheels: .venv/bin/python).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${IMAGE_DIR:-$ROOT/var/image}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
TAG=${IMAGE_TAG:-$VERSION}
for tool in debootstrap umoci chroot unshare; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing (apt-get install debootstrap umoci)" >&2; exit 3; }
done
[ "$(id -u)" -eq 0 ] || { echo "build-image: needs root (debootstrap, chroot)" >&2; exit 3; }

# The mirror apt already uses on this machine (deb822 or one-line sources), unless given.
mirrors() {
  "$PYTHON" - "$1" <<'PY'
import glob, re, sys
want = sys.argv[1]  # "debian" or "debian-security"
found = []
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        continue
    for stanza in re.split(r"\n\s*\n", text):
        uris = re.findall(r"^URIs:\s*(\S+)", stanza, re.M)
        suites = " ".join(re.findall(r"^Suites:\s*(.+)$", stanza, re.M)).split()
        found += [(u, suites) for u in uris]
        for uri, suite in re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", stanza, re.M):
            found.append((uri, [suite]))
suffix = "bookworm-security" if want == "debian-security" else "bookworm"
for uri, suites in found:
    if suffix in suites:
        print(uri.rstrip("/"))
        break
PY
}
MIRROR=${MIRROR:-$(mirrors debian)}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(mirrors debian-security)}
[ -n "$MIRROR" ] || { echo "build-image: no bookworm mirror in /etc/apt/sources.list*; set MIRROR" >&2; exit 3; }

mkdir -p "$OUT"
started=$(date +%s)
# The wheels come through this machine's pip (its index and caches) and are installed offline;
# the base layer's key is the exact set of wheels it needs (not constraints.txt's dev pins).
"$PYTHON" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' >"$OUT/requirements.txt"
"$PYTHON" -m pip download --only-binary=:all: -d "$OUT/wheels" -c constraints.txt torch==2.13.0 -r "$OUT/requirements.txt" 2>/dev/null |
  sed -n -E 's#^ *(Saved|File was already downloaded) .*/([^/]+\.whl)$#\2#p' | sort -u >"$OUT/wheels.txt"
[ -s "$OUT/wheels.txt" ] || { echo "build-image: pip download found no wheels" >&2; exit 4; }
base_key=$( { cat image/apt-packages.txt image/install.sh "$OUT/wheels.txt"; echo "$MIRROR $SECURITY_MIRROR"; } | sha256sum | cut -c1-16)

# Runs a command chrooted in $1 with /proc and /dev, in a private mount namespace (no leftovers),
# with a clean environment (nothing of this machine's pip or proxy settings leaks in).
in_root() {
  local rootfs=$1
  shift
  unshare -m -- sh -c 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"' \
    "$rootfs" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

layout=$OUT/oci
if [ "$(cat "$OUT/base.key" 2>/dev/null)" != "$base_key" ] || ! umoci stat --image "$layout:base-$base_key" >/dev/null 2>&1; then
  echo "build-image: base layer $base_key (debootstrap $MIRROR bookworm)"
  rootfs=$OUT/rootfs-base
  rm -rf "$rootfs" "$OUT/bundle-base" "$layout" "$OUT/base.key" "$OUT/app.key"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$OUT/debootstrap.log"
  {
    echo "deb $MIRROR bookworm main"
    echo "deb $MIRROR bookworm-updates main"
    [ -z "$SECURITY_MIRROR" ] || echo "deb $SECURITY_MIRROR bookworm-security main"
  } >"$rootfs/etc/apt/sources.list"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mkdir -p "$rootfs/opt/mammo-node"
  cp -r image pyproject.toml constraints.txt "$rootfs/opt/mammo-node/"
  in_root "$rootfs" /opt/mammo-node/image/install.sh system
  mkdir -p "$rootfs/tmp/wheels"
  while read -r wheel; do
    cp -l "$OUT/wheels/$wheel" "$rootfs/tmp/wheels/" 2>/dev/null || cp "$OUT/wheels/$wheel" "$rootfs/tmp/wheels/"
  done <"$OUT/wheels.txt"
  in_root "$rootfs" /opt/mammo-node/image/install.sh python
  rm -rf "$rootfs/tmp/wheels" "$rootfs/etc/resolv.conf" "$rootfs"/var/cache/apt/*.bin "$rootfs/root/.cache"
  umoci init --layout "$layout"
  umoci new --image "$layout:base-$base_key"
  umoci unpack --image "$layout:base-$base_key" "$OUT/bundle-base"
  cp -a "$rootfs/." "$OUT/bundle-base/rootfs/"
  umoci repack --image "$layout:base-$base_key" "$OUT/bundle-base"
  rm -rf "$OUT/bundle-base"
  echo "$base_key" >"$OUT/base.key"
fi

# The app layer: the source tree as the Dockerfile copies it, byte-compiled in the image.
app_key=$( { echo "$base_key"; cat Dockerfile; tar -c --sort=name --mtime=@0 --owner=0 --group=0 --exclude=__pycache__ node orthanc models dicom_sr_templates LICENSE; } | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/app.key" 2>/dev/null)" != "$app_key" ] || ! umoci stat --image "$layout:$TAG" >/dev/null 2>&1; then
  echo "build-image: app layer $app_key"
  bundle=$OUT/bundle-app
  rm -rf "$bundle"
  umoci unpack --image "$layout:base-$base_key" "$bundle"
  tar -c --exclude=__pycache__ node orthanc models dicom_sr_templates LICENSE |
    tar -x -C "$bundle/rootfs/opt/mammo-node"
  in_root "$bundle/rootfs" /opt/mammo-node/image/install.sh app
  umoci repack --image "$layout:$TAG" --refresh-bundle "$bundle"
  mapfile -t config < <("$PYTHON" image/oci_config.py Dockerfile)
  umoci config --image "$layout:$TAG" "${config[@]}" \
    --config.label "org.opencontainers.image.title=mammo-node" \
    --config.label "org.opencontainers.image.version=$VERSION"
  rm -rf "$bundle"
  umoci gc --layout "$layout"  # the previous app layer's blobs
  echo "$app_key" >"$OUT/app.key"
fi

size=$(du -sb "$layout/blobs" | cut -f1)
unpacked=$(du -sb "$OUT/rootfs-base" | cut -f1)
seconds=$(($(date +%s) - started))
printf '{"image": "%s:%s", "base_key": "%s", "app_key": "%s", "oci_blobs_bytes": %s, "base_rootfs_bytes": %s, "seconds": %s}\n' \
  "$layout" "$TAG" "$base_key" "$app_key" "$size" "$unpacked" "$seconds" | tee "$OUT/build.json"
