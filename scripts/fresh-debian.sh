#!/usr/bin/env bash
# Runs the README's two commands, exactly as the README writes them, the way a newcomer would: in a
# fresh Debian 12 minbase root (debootstrap) with nothing but this machine's Node.js and npm (and its
# CA bundle, so the registries answer as they do here), from a clean clone of this checkout. A step
# that only works because this machine already has something installed fails here.
#
#   bash scripts/fresh-debian.sh        (as root: debootstrap, mount and chroot need it)
#
# Environment: CI is passed on (under CI=true a missing test prerequisite fails the suite);
# KUBEHYVE_DEBIAN_MIRROR overrides the Debian mirror (default: the one this machine's apt uses).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
shared="$(cd "$repo/.." && pwd)/shared"

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-debian.sh needs root (debootstrap, mount, chroot)" >&2
  exit 1
fi
[ -d "$shared/oracles" ] || {
  echo "the upstream oracle data is not at $shared/oracles: the tests need it beside the checkout" >&2
  exit 1
}
for tool in node npm; do command -v "$tool" >/dev/null || {
  echo "$tool is not installed: the fresh root gets this machine's Node.js and npm" >&2
  exit 1
}; done
if ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

mirror="${KUBEHYVE_DEBIAN_MIRROR:-$(
  { grep -sh '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ print $2 }'
    grep -sh '^deb ' /etc/apt/sources.list | awk '{ print $2 }'; } | grep -v security | head -n 1 || true
)}"
mirror="${mirror:-http://deb.debian.org/debian}"

work="$(mktemp -d /tmp/kubehyve-fresh-debian.XXXXXX)"
root="$work/root"
mounted=()

# Unmounts before anything is removed, and removes nothing while anything is still mounted under the
# root: a recursive delete through a bound /dev or /sys would reach this machine's own.
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
  done
  if awk -v root="$root" -v r="$root/" '$2 == root || index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    echo "left $work in place: something is still mounted under it" >&2
    return
  fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

bind() {
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  mounted+=("$root$1")
}

started=$SECONDS
echo "fresh-debian: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 20 "$work/debootstrap.log" >&2
  exit 1
}
echo "fresh-debian: root made in $((SECONDS - started)) s"

# What a newcomer's machine has: Node.js 20 and npm, the CA bundle, name resolution.
cp -a "$(command -v node)" "$root/usr/bin/node"
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
mkdir -p "$root/usr/lib/node_modules"
cp -a "$npm_dir" "$root/usr/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
[ -f /usr/etc/npmrc ] && install -D -m 0644 /usr/etc/npmrc "$root/usr/etc/npmrc"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# Packages installed in the root must not start their services on this machine's network (an sshd
# on port 22): the usual policy for a chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# The root is a mount point of its own, as / is on a real machine: a mount namespace made inside it
# (the full-disk tests' unshare -m) can then make its mounts private, which it cannot do for a /
# that is no mount point. Private here too, so that nothing mounted below it reaches this machine.
mount --bind "$root" "$root"
mount --make-private "$root"
mounted+=("$root")

bind /proc
bind /sys
bind /dev
bind /dev/pts

# A clean clone, and the upstream oracle data beside it, as the tests expect.
mkdir -p "$root/work"
git clone -q "$repo" "$root/work/kubehyve"
mkdir -p "$root/work/shared" && cp -a "$shared/." "$root/work/shared/"

# The README's commands: the first two lines of its first sh block, comments dropped.
mapfile -t commands < <(awk '/^```sh$/ { inblock = 1; next } inblock && /^```/ { exit } inblock' "$repo/README.md" |
  sed -e 's/[[:space:]]*#.*$//' | grep -v '^$' | head -n 2)
[ ${#commands[@]} -eq 2 ] || {
  echo "the README does not start with a sh block of two commands" >&2
  exit 1
}

env_vars=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
[ -n "${CI:-}" ] && env_vars+=("CI=$CI")
[ -n "${NODE_EXTRA_CA_CERTS:-}" ] && env_vars+=("NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt")
for command in "${commands[@]}"; do
  echo "fresh-debian: \$ $command"
  step=$SECONDS
  chroot "$root" /usr/bin/env -i "${env_vars[@]}" /bin/bash -c "cd /work/kubehyve && $command"
  echo "fresh-debian: done in $((SECONDS - step)) s"
done
echo "fresh-debian: both README commands passed on a fresh Debian 12 in $((SECONDS - started)) s"
