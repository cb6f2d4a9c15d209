#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build (once, cached) the VM's root disk: Debian bookworm debootstrapped with
# docker.io, iptables, kmod and Debian's own kernel, plus a small initrd that can
# mount a virtio root. Also leaves vmlinuz and initrd.img next to the disk.
#
# Output (in $WSVM_CACHE/root-KEY/): root.raw, vmlinuz, initrd.img.
# Prints the directory on stdout. Key: hash of this script and the VM init stub.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

wsvm_need debootstrap mkfs.ext4 mount umount chroot sha256sum
key="$(wsvm_hash_files "$here/build-root.sh" "$here/guest/ws-vm-init")"
out="$WSVM_CACHE/root-$key"
if [[ -s "$out/root.raw" && -s "$out/vmlinuz" && -s "$out/initrd.img" ]]; then
    wsvm_log "root disk cached: $out"
    echo "$out"
    exit 0
fi

mirror="$(wsvm_mirror)"
[[ -n "$mirror" ]] || wsvm_die "no URIs for suite $WSVM_SUITE in the apt sources: cannot debootstrap"
mkdir -p "$WSVM_CACHE"
work="$(mktemp -d "$WSVM_CACHE/root-build.XXXXXX")"
mnt="$work/mnt"
mkdir -p "$mnt"

cleanup() {
    local m
    for m in dev/pts dev sys proc; do
        if mountpoint -q "$mnt/$m" 2>/dev/null; then umount -l "$mnt/$m" || true; fi
    done
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || umount -l "$mnt" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A sparse ext4 image, loop-mounted so debootstrap writes straight into it.
truncate -s 4G "$work/root.raw"
mkfs.ext4 -q -F -L wsvm-root "$work/root.raw"
mount -o loop "$work/root.raw" "$mnt"

wsvm_log "debootstrap $WSVM_SUITE (minbase)"
debootstrap --variant=minbase "$WSVM_SUITE" "$mnt" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; wsvm_die "debootstrap failed"; }

# The chroot uses this machine's apt sources (read at run time, not committed).
rm -f "$mnt/etc/apt/sources.list"
cp /etc/apt/sources.list.d/debian.sources "$mnt/etc/apt/sources.list.d/debian.sources"
# Nothing starts services inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$mnt/usr/sbin/policy-rc.d"
chmod 755 "$mnt/usr/sbin/policy-rc.d"
echo wsvm >"$mnt/etc/hostname"

mount -t proc proc "$mnt/proc"
mount -t sysfs sysfs "$mnt/sys"
mount --bind /dev "$mnt/dev"
mount --bind /dev/pts "$mnt/dev/pts"

wsvm_log "installing docker.io, iptables, kmod and the kernel in the chroot"
chroot "$mnt" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confold \
        docker.io iptables kmod iproute2 procps linux-image-amd64' >"$work/apt.log" 2>&1 ||
    { tail -n 30 "$work/apt.log" >&2; wsvm_die "apt-get install in the chroot failed"; }

# Small initrd: only what mounts an ext4 root on virtio-blk (less to load under TCG).
cat >"$mnt/etc/initramfs-tools/conf.d/wsvm.conf" <<'CONF'
MODULES=list
COMPRESS=gzip
CONF
printf '%s\n' virtio_pci virtio_blk ext4 >>"$mnt/etc/initramfs-tools/modules"
chroot "$mnt" update-initramfs -u -k all >>"$work/apt.log" 2>&1 ||
    { tail -n 30 "$work/apt.log" >&2; wsvm_die "update-initramfs failed"; }

install -m 0755 "$here/guest/ws-vm-init" "$mnt/sbin/ws-vm-init"
chroot "$mnt" apt-get clean
rm -rf "$mnt/var/lib/apt/lists/"*

cp -L "$mnt/vmlinuz" "$work/vmlinuz"
cp -L "$mnt/initrd.img" "$work/initrd.img"
for m in dev/pts dev sys proc; do umount "$mnt/$m"; done
umount "$mnt"

mkdir -p "$out"
mv "$work/root.raw" "$work/vmlinuz" "$work/initrd.img" "$out/"
wsvm_log "root disk built: $out"
echo "$out"
