#!/bin/sh
# Assembles the container image's root filesystem (the Dockerfile's last stage copies it whole):
# inp2ps and inp2pc, exactly the shared libraries they load, /etc/inp2p for the config and a /tmp.
# test/integration/release.test.ts runs this same script and the programs inside the result (chroot).
#
#   sh scripts/container-rootfs.sh <directory holding inp2ps and inp2pc (a glibc build)> <rootfs>
set -eu

[ $# -eq 2 ] || { echo "usage: container-rootfs.sh <binary directory> <rootfs>" >&2; exit 2; }
bin_dir=$1
rootfs=$2

mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/inp2p" "$rootfs/tmp"
# Bun writes the embedded koffi module to a temporary file before loading it.
chmod 1777 "$rootfs/tmp"
for binary in inp2ps inp2pc; do
  cp "$bin_dir/$binary" "$rootfs/usr/local/bin/$binary"
done

# The programs' libraries (both are the same runtime), then those koffi's module needs: it sits inside
# inp2pc, where ldd cannot see it.
libs=$(ldd "$bin_dir/inp2pc" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }')
for soname in libstdc++.so.6 libgcc_s.so.1; do
  path=$(ldconfig -p | awk -v soname="$soname" '$1 == soname { print $NF; exit }')
  [ -n "$path" ] || { echo "container-rootfs.sh: $soname is not installed" >&2; exit 1; }
  libs="$libs $path"
done
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
