#!/bin/bash
# libvfio-user at the revision QEMU pins (subprojects/libvfio-user of trixie's
# qemu source package), release build, with MAX_DMA_REGIONS raised to 64
# (QEMU maps every RAM section and the 17th map fails silently otherwise) and
# scripts/libvfio-user-robustness.patch applied.
# Output: $OUT/include, $OUT/lib/libvfio-user.so*.
source "$(dirname "$0")/lib.sh"
work="$OUT/.work"; mkdir -p "$work"
echo "== fetching qemu source (trixie)"
papt_update
debs="$PAPT_DIR/debs"; mkdir -p "$debs"
if ! compgen -G "$debs/qemu_*.orig.tar.xz" >/dev/null; then
    (cd "$debs" && papt source --download-only -q qemu/trixie >/dev/null) \
        || die "could not download trixie's qemu source package"
fi
orig=$(ls "$debs"/qemu_*.orig.tar.xz | head -n1)
echo "== extracting subprojects/libvfio-user from $(basename "$orig")"
tar -xJf "$orig" -C "$work" --wildcards '*/subprojects/libvfio-user/*'
src=$(ls -d "$work"/*/subprojects/libvfio-user)
grep -q '^#define MAX_DMA_REGIONS 16$' "$src/lib/private.h" \
    || die "lib/private.h has no '#define MAX_DMA_REGIONS 16' to patch"
sed -i 's/^#define MAX_DMA_REGIONS 16$/#define MAX_DMA_REGIONS 64/' "$src/lib/private.h"
echo "== applying libvfio-user-robustness.patch"
patch -p1 -d "$src" < "$(dirname "$0")/libvfio-user-robustness.patch" >"$work/patch.log" 2>&1 \
    || { cat "$work/patch.log"; die "libvfio-user-robustness.patch does not apply"; }
echo "== meson + ninja (release)"
meson setup "$work/build" "$src" -Dbuildtype=release -Ddebug-logs=disabled \
    --prefix="$OUT" --libdir=lib >"$work/meson.log" 2>&1 || { cat "$work/meson.log"; die "meson setup failed"; }
ninja -C "$work/build" lib/libvfio-user.so.0.0.1 >"$work/ninja.log" 2>&1 \
    || { cat "$work/ninja.log"; die "ninja failed"; }
mkdir -p "$OUT/lib" "$OUT/include"
cp "$work/build/lib/libvfio-user.so.0.0.1" "$OUT/lib/"
ln -sf libvfio-user.so.0.0.1 "$OUT/lib/libvfio-user.so.0"
ln -sf libvfio-user.so.0 "$OUT/lib/libvfio-user.so"
cp -r "$src/include/." "$OUT/include/"
rm -rf "$work"
echo "== libvfio-user ready: $(ls "$OUT/lib")"
