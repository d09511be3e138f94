/** Verbatim output of the programs verify runs on a node, each with its source. */

// `cat /etc/os-release` on Fedora CoreOS 41.20241109.3.0, captured verbatim in a public write-up
// (GitHub markdown, search index id 49070766730).
export const FCOS_OS_RELEASE = `NAME="Fedora Linux"
VERSION="41.20241109.3.0 (CoreOS)"
RELEASE_TYPE=stable
ID=fedora
VERSION_ID=41
VERSION_CODENAME=""
PLATFORM_ID="platform:f41"
PRETTY_NAME="Fedora CoreOS 41.20241109.3.0"
ANSI_COLOR="0;38;2;60;110;180"
LOGO=fedora-logo-icon
CPE_NAME="cpe:/o:fedoraproject:fedora:41"
HOME_URL="https://getfedora.org/coreos/"
DOCUMENTATION_URL="https://docs.fedoraproject.org/en-US/fedora-coreos/"
SUPPORT_URL="https://github.com/coreos/fedora-coreos-tracker/"
BUG_REPORT_URL="https://github.com/coreos/fedora-coreos-tracker/"
REDHAT_BUGZILLA_PRODUCT="Fedora"
REDHAT_BUGZILLA_PRODUCT_VERSION=41
REDHAT_SUPPORT_PRODUCT="Fedora"
REDHAT_SUPPORT_PRODUCT_VERSION=41
SUPPORT_END=2025-12-15
VARIANT="CoreOS"
VARIANT_ID=coreos
OSTREE_VERSION='41.20241109.3.0'
`;

// `ip -o -4 addr show` of iproute2 6.1 (Debian 12), captured verbatim on the test machine.
export const IP_ADDR = `1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever
`;

// `timedatectl show` as published in a systemd how-to (GitHub markdown, search index id 28785973834).
export const TIMEDATECTL_SHOW = `Timezone=Europe/Amsterdam
LocalRTC=no
CanNTP=yes
NTP=yes
NTPSynchronized=yes
TimeUSec=Mon 2025-01-06 14:13:15 CET
RTCTimeUSec=Mon 2025-01-06 14:13:14 CET
`;
