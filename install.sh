#!/bin/sh
# inp2p installer.
#
#   curl -fsSL https://github.com/inp2p/inp2p/releases/latest/download/install.sh | sh -s -- --role client
#
# Environment:
#   INP2P_BASE_URL    where releases live (default https://github.com/inp2p/inp2p/releases/latest/download)
#   PREFIX            binary goes to $PREFIX/bin (default /usr/local)
#   INP2P_CONFIG_DIR  config directory (default /etc/inp2p)
#   SYSTEMD_DIR       unit directory (default /etc/systemd/system)
#   INP2P_NO_SYSTEMD  set to skip installing the systemd unit
#   INP2P_FORCE_SYSTEMD  set to install the unit even when systemd does not seem to be running
#   INP2P_ALLOW_UNSIGNED set to install a release that has no SHA256SUMS.sig (a build made without a key)
#
# For tests only (test/integration/install.test.ts, release.test.ts):
#   INP2P_TEST_RELEASE_PUBLIC_KEY  PEM of the key to verify SHA256SUMS.sig with, instead of the release key
#   INP2P_TEST_LIB_DIR             where to look for the loaders ld-musl-* and ld-linux-*, instead of /lib /lib64
# (`uname` is faked by putting another one first on PATH.)
set -eu

DEFAULT_BASE_URL=https://github.com/inp2p/inp2p/releases/latest/download
# The platforms releases are built for (scripts/build.ts), named when a release index cannot be read.
KNOWN_PLATFORMS="linux-x64 linux-x64-musl linux-arm64 linux-arm64-musl"
# The Ed25519 key that signs each SHA256SUMS (the same as RELEASE_PUBLIC_KEY_PEM in src/crypto/release-key.ts).
RELEASE_PUBLIC_KEY='-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAEzQrA3TTcV++TLcIWrkoKWv90Ampymnkg1NixGxnTsU=
-----END PUBLIC KEY-----'

tmp_dir=""
partial_file=""

usage() {
  cat <<'EOF'
Usage: install.sh --role client|server

Downloads the inp2p client (inp2pc) or server (inp2ps) for this machine (x64 or arm64, glibc or
musl), checks it against the release SHA256SUMS and, when openssl is installed, that file's Ed25519
signature, installs it to $PREFIX/bin (default /usr/local/bin), writes an example config to
$INP2P_CONFIG_DIR (default /etc/inp2p) unless one exists, and enables a systemd unit when systemd
is running (set INP2P_NO_SYSTEMD=1 to skip).

Options:
  --role client|server   what to install (required)
  -h, --help             show this help
EOF
}

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'install.sh: %s\n\n' "$*" >&2; usage >&2; exit 2; }

cleanup() {
  if [ -n "$tmp_dir" ]; then rm -rf "$tmp_dir"; fi
  if [ -n "$partial_file" ]; then rm -f "$partial_file"; fi
}

detect_platform() {
  os=$(uname -s)
  arch=$(uname -m)
  case "$os" in
    Linux) os_name=linux ;;
    *) no_build "$os-$arch" ;;
  esac
  case "$arch" in
    x86_64 | amd64) arch_name=x64 ;;
    aarch64 | arm64) arch_name=arm64 ;;
    *) no_build "$os_name-$arch" ;;
  esac
  # musl when its loader is there and glibc's is not: Debian's `musl` package adds ld-musl-* to glibc systems.
  musl="" glibc=""
  for loader in ${INP2P_TEST_LIB_DIR:-/lib /lib64}/ld-*; do
    case "$loader" in
      */ld-musl-*) musl=1 ;;
      */ld-linux-*) glibc=1 ;;
    esac
  done
  if [ -n "$musl" ] && [ -z "$glibc" ]; then libc_suffix=-musl; else libc_suffix=""; fi
  echo "$os_name-$arch_name$libc_suffix"
}

# The platforms this release has, from the index at the top of the release (`<sha256>  <platform>/<file>`).
released_platforms() {
  if try_download "$base_url/SHA256SUMS" "$tmp_dir/index" 2>/dev/null; then
    awk '{ n = index($2, "/"); if (n > 0) print substr($2, 1, n - 1) }' "$tmp_dir/index" | sort -u | tr '\n' ' ' | sed 's/ $//'
  else
    echo "$KNOWN_PLATFORMS"
  fi
}

no_build() { # platform
  die "there is no inp2p build for $1 (builds: $(released_platforms))"
}

try_download() { # url file
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "neither curl nor wget is installed"
  fi
}

download() { # url file
  try_download "$1" "$2" || die "download failed: $1"
}

# Checks $tmp_dir/SHA256SUMS.sig against the release key with openssl (OpenSSL 3 verifies raw Ed25519).
verify_signature() {
  if ! try_download "$base_url/$platform/SHA256SUMS.sig" "$tmp_dir/SHA256SUMS.sig" 2>/dev/null; then
    [ -n "${INP2P_ALLOW_UNSIGNED:-}" ] ||
      die "the release has no $platform/SHA256SUMS.sig; refusing to install an unsigned release (set INP2P_ALLOW_UNSIGNED=1 to install it anyway)"
    say "Warning: the release is unsigned (no SHA256SUMS.sig); installing it because INP2P_ALLOW_UNSIGNED is set"
    return 0
  fi
  if ! command -v openssl >/dev/null 2>&1; then
    say "Warning: openssl is not installed: the release signature was not checked (the checksums are)"
    return 0
  fi
  if ! openssl pkeyutl -help 2>&1 | grep -q rawin; then
    say "Warning: this openssl cannot verify Ed25519 signatures (OpenSSL 3 can): the release signature was not checked (the checksums are)"
    return 0
  fi
  printf '%s\n' "${INP2P_TEST_RELEASE_PUBLIC_KEY:-$RELEASE_PUBLIC_KEY}" >"$tmp_dir/release-key.pem"
  openssl pkeyutl -verify -pubin -inkey "$tmp_dir/release-key.pem" -rawin \
    -in "$tmp_dir/SHA256SUMS" -sigfile "$tmp_dir/SHA256SUMS.sig" >/dev/null 2>&1 ||
    die "bad signature: $platform/SHA256SUMS.sig does not verify SHA256SUMS with the inp2p release key; refusing to install"
  say "Signature OK"
}

sha256_of() { # file
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | awk '{ print $1 }'
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | awk '{ print $1 }'
  else
    die "neither sha256sum nor shasum is installed; cannot verify the download"
  fi
}

verify() { # name: checks $tmp_dir/name against $tmp_dir/SHA256SUMS
  expected=$(awk -v name="$1" '$2 == name || $2 == "*" name { print $1; exit }' "$tmp_dir/SHA256SUMS")
  [ -n "$expected" ] || die "no checksum for $1 in SHA256SUMS; refusing to install"
  actual=$(sha256_of "$tmp_dir/$1")
  [ "$actual" = "$expected" ] ||
    die "checksum mismatch for $1 (expected $expected, got $actual); refusing to install"
}

require_absolute() { # name value
  case "$2" in
    /*) ;;
    *) die "$1 must be an absolute path (got '$2')" ;;
  esac
}

require_writable_dir() { # dir
  if ! mkdir -p "$1" 2>/dev/null || [ ! -w "$1" ]; then
    die "cannot write to $1 (run as root, e.g. '| sudo sh -s -- --role $role', or change PREFIX / INP2P_CONFIG_DIR / SYSTEMD_DIR)"
  fi
}

# Copies src to dest with a mode through a temp file in dest's directory, so dest is never half-written.
install_file() { # src dest mode
  partial_file="$2.tmp.$$"
  cp "$1" "$partial_file"
  chmod "$3" "$partial_file"
  mv -f "$partial_file" "$2"
  partial_file=""
}

sed_escape() { printf '%s\n' "$1" | sed 's/[#&\\]/\\&/g'; }

main() {
  role=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --role)
        [ $# -ge 2 ] || usage_error "--role needs a value: client or server"
        role=$2
        shift 2
        ;;
      --role=*) role=${1#--role=}; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage_error "unknown argument: $1" ;;
    esac
  done
  case "$role" in
    client) binary=inp2pc ;;
    server) binary=inp2ps ;;
    "") usage_error "--role is required" ;;
    *) usage_error "unknown role '$role' (expected client or server)" ;;
  esac

  base_url=${INP2P_BASE_URL:-$DEFAULT_BASE_URL}
  bin_dir=${PREFIX:-/usr/local}/bin
  config_dir=${INP2P_CONFIG_DIR:-/etc/inp2p}
  systemd_dir=${SYSTEMD_DIR:-/etc/systemd/system}
  require_absolute PREFIX "$bin_dir"
  require_absolute INP2P_CONFIG_DIR "$config_dir"
  require_absolute SYSTEMD_DIR "$systemd_dir"

  use_systemd=""
  if [ -z "${INP2P_NO_SYSTEMD:-}" ] && { [ -d /run/systemd/system ] || [ -n "${INP2P_FORCE_SYSTEMD:-}" ]; }; then
    use_systemd=1
  fi

  config_file=$config_dir/$binary.toml
  files="$binary $binary.example.toml $binary.service"

  tmp_dir=$(mktemp -d 2>/dev/null || mktemp -d -t inp2p)
  trap cleanup EXIT
  trap 'exit 1' HUP INT TERM

  platform=$(detect_platform)
  say "Downloading $binary for $platform from $base_url/$platform/"
  if ! try_download "$base_url/$platform/SHA256SUMS" "$tmp_dir/SHA256SUMS"; then
    if try_download "$base_url/SHA256SUMS" "$tmp_dir/index" 2>/dev/null && ! grep -q "  $platform/" "$tmp_dir/index"; then
      no_build "$platform"
    fi
    die "download failed: $base_url/$platform/SHA256SUMS"
  fi
  verify_signature
  for file in $files; do
    download "$base_url/$platform/$file" "$tmp_dir/$file"
  done
  # Everything is checked before anything is installed.
  for file in $files; do
    verify "$file"
  done
  say "Checksums OK"

  require_writable_dir "$bin_dir"
  require_writable_dir "$config_dir"
  if [ -n "$use_systemd" ]; then require_writable_dir "$systemd_dir"; fi

  install_file "$tmp_dir/$binary" "$bin_dir/$binary" 0755
  say "Installed $bin_dir/$binary"

  if [ -e "$config_file" ]; then
    say "Kept existing config $config_file"
  else
    install_file "$tmp_dir/$binary.example.toml" "$config_file" 0600
    say "Wrote example config $config_file"
  fi

  if [ -n "$use_systemd" ]; then
    sed -e "s#/usr/local/bin#$(sed_escape "$bin_dir")#g" \
      -e "s#/etc/inp2p#$(sed_escape "$config_dir")#g" \
      "$tmp_dir/$binary.service" >"$tmp_dir/$binary.service.local"
    install_file "$tmp_dir/$binary.service.local" "$systemd_dir/$binary.service" 0644
    systemctl daemon-reload || die "systemctl daemon-reload failed"
    systemctl enable "$binary" || die "systemctl enable $binary failed"
    say "Installed and enabled $systemd_dir/$binary.service (not started)"
  fi

  case "$role" in
    client) keys="server_host, node and token" ;;
    server) keys="token (derive one with: $bin_dir/inp2ps token --user USER --password PASSWORD)" ;;
  esac
  say ""
  say "Next steps:"
  say "  1. Edit $config_file: set $keys."
  if [ -n "$use_systemd" ]; then
    say "  2. Start it:  systemctl start $binary    (logs: journalctl -u $binary -f)"
  else
    say "  2. Start it:  $bin_dir/$binary --config $config_file"
  fi
}

main "$@"
