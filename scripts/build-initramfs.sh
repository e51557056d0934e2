#!/bin/bash
# Guest userland: busybox, nvme-cli 1.12 (the last with the `lnvm` plugin,
# from bullseye), fio and e2fsprogs (bookworm) with exactly the shared
# libraries their loader resolves, and the guest /init.
# Output: $OUT/base.cpio.gz
source "$(dirname "$0")/lib.sh"
init_script="$(cd "$(dirname "$0")/.." && pwd)/ocssd_vfu/guest/guest-init.sh"
work="$OUT/.work"; stage="$work/stage"; root="$work/root"
mkdir -p "$stage" "$root"

echo "== fetching packages (busybox-static, fio, e2fsprogs, nvme-cli 1.12)"
papt_update
# The whole dependency closure, resolved by apt against an empty status file.
papt install --download-only -y -q --no-install-recommends \
    busybox-static fio e2fsprogs libuuid1 >/dev/null \
    || die "apt could not resolve/download busybox-static fio e2fsprogs"
for deb in "$PAPT_DIR"/cache/archives/*.deb; do dpkg-deb -x "$deb" "$stage"; done
dpkg-deb -x "$(papt_fetch nvme-cli/bullseye)" "$stage"

echo "== assembling the root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib64,lib,etc,proc,sys,dev,tmp,run,mnt,results,root}
cp "$stage/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
install_bin() {  # copy a staged binary (replacing any busybox applet link)
    local rel="$1"; [ -f "$stage/$rel" ] || die "staged binary $rel is missing"
    rm -f "$root/$rel"; cp "$stage/$rel" "$root/$rel"
}
install_bin usr/sbin/nvme
install_bin usr/bin/fio
install_bin sbin/mke2fs
install_bin sbin/e2fsck
for link in mkfs.ext4 mkfs.ext2 mkfs.ext3; do ln -sf mke2fs "$root/sbin/$link"; done
ln -sf e2fsck "$root/sbin/fsck.ext4"
cp -a "$stage"/etc/mke2fs.conf "$root/etc/" 2>/dev/null || true

# Resolve shared libraries with the staged loader against the staged tree only.
# (every staged directory holding a shared library: some sit in private
# subdirectories that their users reach through RUNPATH, e.g. ceph/)
libpath=$(find "$stage" -name '*.so*' -type f -printf '%h\n' | sort -u | paste -sd:)
loader="$stage/lib64/ld-linux-x86-64.so.2"
[ -e "$loader" ] || loader="$stage/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
for b in usr/sbin/nvme usr/bin/fio sbin/mke2fs sbin/e2fsck; do
    "$loader" --library-path "$libpath" --list "$root/$b" > "$work/ldd.out" \
        || die "cannot resolve the libraries of $b"
    ! grep -q 'not found' "$work/ldd.out" || { cat "$work/ldd.out"; die "$b needs a missing library"; }
    awk '$2=="=>" {print $3}' "$work/ldd.out"
done | sort -u > "$work/libs"
mkdir -p "$root/lib/x86_64-linux-gnu"
while read -r lib; do cp -L "$lib" "$root/lib/x86_64-linux-gnu/"; done < "$work/libs"
cp -L "$loader" "$root/lib64/ld-linux-x86-64.so.2"

echo "== /init"
cp "$init_script" "$root/init"; chmod 755 "$root/init"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"

echo "== packing"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6 > "$OUT/base.cpio.gz")
rm -rf "$work"
echo "== initramfs ready: $(du -h "$OUT/base.cpio.gz" | cut -f1)"
