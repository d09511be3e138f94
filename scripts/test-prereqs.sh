#!/usr/bin/env bash
# Installs the real programs the test suite runs against, from Debian's packages:
# OpenSSH (a loopback sshd stands in for nodes and remote hosts), ignition-validate, dnsmasq,
# qemu-img and xz (the Fedora CoreOS image pipeline), Ansible (Kubespray's runner), openssl
# (certificates of the Kubernetes API test server), file (checks the FreeBSD binary), python3
# (measures the peak memory of the binary without the test runner's own).
set -euo pipefail

packages=(openssh-server openssh-client ignition dnsmasq-base qemu-utils xz-utils ansible openssl file git python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
