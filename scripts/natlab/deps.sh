#!/usr/bin/env bash
# Installs what the NAT lab, the e2e tests and the release tests (readelf, openssl, qemu-user for arm64) need,
# when missing and when we can (root + apt).
# Quiet on success; costs ~0 s when everything is already there. Fails only in CI (CI=true), where
# the e2e tests must run rather than be skipped; elsewhere a failed install just skips them.
set -u
PATH="$PATH:/usr/sbin:/sbin" # stund, nft and ip live in sbin

# command -> Debian package
declare -A PACKAGE_OF=(
  [ip]=iproute2
  [ss]=iproute2
  [nft]=nftables
  [stun]=stun-client
  [stund]=stun-server
  [iperf3]=iperf3
  [socat]=socat
  [tcpdump]=tcpdump
  [ping]=iputils-ping
  [dig]=bind9-dnsutils
  [dnsmasq]=dnsmasq-base
  [conntrack]=conntrack
  [prometheus]=prometheus
  [chromium]=chromium
  [readelf]=binutils
  [openssl]=openssl
  [qemu-aarch64]=qemu-user
)
# file -> Debian package: the arm64 runtime qemu-user runs the arm64 release builds with
# (QEMU_LD_PREFIX=/usr/aarch64-linux-gnu); koffi needs libstdc++ and libgcc_s.
declare -A PACKAGE_OF_FILE=(
  [/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1]=libc6-arm64-cross
  [/usr/aarch64-linux-gnu/lib/libstdc++.so.6]=libstdc++6-arm64-cross
  [/usr/aarch64-linux-gnu/lib/libgcc_s.so.1]=libgcc-s1-arm64-cross
)
APT_TIMEOUT_SECONDS=300

missing=()
for command_name in "${!PACKAGE_OF[@]}"; do
  command -v "$command_name" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$command_name]}")
done
for file in "${!PACKAGE_OF_FILE[@]}"; do
  [ -e "$file" ] || missing+=("${PACKAGE_OF_FILE[$file]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "natlab: missing ${missing[*]} and cannot install them (need root and apt-get): NAT lab e2e tests will be skipped"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { timeout "$APT_TIMEOUT_SECONDS" apt-get update -q &&
       timeout "$APT_TIMEOUT_SECONDS" apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo "natlab: installing ${missing[*]} failed (NAT lab e2e tests will be skipped); last lines:"
  tail -n 5 "$log"
  rm -f "$log"
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
rm -f "$log"
exit 0
