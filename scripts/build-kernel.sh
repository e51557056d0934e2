#!/bin/bash
# Guest kernel: Linux 5.10 from bullseye's linux-source-5.10 with LightNVM and
# pblk (dropped upstream in 5.15, and unset in Debian's own kernels).
# Output: $OUT/bzImage, $OUT/config.
source "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
work="$OUT/.work"; mkdir -p "$work"

echo "== fetching linux-source-5.10 (bullseye)"
papt_update
dpkg-deb -x "$(papt_fetch linux-source-5.10/bullseye)" "$work/deb"
tarball=$(ls "$work"/deb/usr/src/linux-source-5.10.tar.*)
echo "== unpacking $(basename "$tarball")"
tar -xf "$tarball" -C "$work"
src="$work/linux-source-5.10"
rm -rf "$work/deb"

echo "== configuring"
# 5.10.223 marks LightNVM BROKEN; it works for our purpose.
sed -i 's/depends on BLOCK && BROKEN/depends on BLOCK/' "$src/drivers/lightnvm/Kconfig"
grep -q 'depends on BLOCK$' "$src/drivers/lightnvm/Kconfig" \
    || die "drivers/lightnvm/Kconfig no longer has the expected 'depends on BLOCK && BROKEN' line"
make -C "$src" -s ARCH=x86_64 tinyconfig
"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$here/guest-kernel.config" >/dev/null
make -C "$src" -s ARCH=x86_64 olddefconfig
missing=0
while read -r line; do
    case "$line" in CONFIG_*=y)
        grep -qx "$line" "$src/.config" || { echo "  lost: $line" >&2; missing=1; } ;;
    esac
done < "$here/guest-kernel.config"
[ "$missing" = 0 ] || die "kernel options above did not stay enabled after olddefconfig"
grep -qx CONFIG_NVM=y "$src/.config" && grep -qx CONFIG_NVM_PBLK=y "$src/.config" \
    || die "CONFIG_NVM / CONFIG_NVM_PBLK are not enabled"

echo "== building bzImage ($(nproc) cores, a few minutes)"
make -C "$src" -s ARCH=x86_64 -j"$(( $(nproc) + 1 ))" bzImage 2>&1 | grep -v '^  ' || true
[ -f "$src/arch/x86/boot/bzImage" ] || die "bzImage was not produced"
cp "$src/arch/x86/boot/bzImage" "$OUT/bzImage"
cp "$src/.config" "$OUT/config"
rm -rf "$work"
echo "== kernel ready: $(du -h "$OUT/bzImage" | cut -f1)"
