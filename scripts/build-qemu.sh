#!/bin/bash
# A QEMU >= 10.1.1 whose vfio-user-pci has x-pci-class-code. Debian sid's
# build needs a newer glibc than the host's, so it lives in a private root
# and runs through that root's own dynamic loader (no chroot, no root needed
# at run time). Output: $OUT/qemu-system-x86_64 (a wrapper script).
source "$(dirname "$0")/lib.sh"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (a host package)"
m=$(mirror_uri)
echo "== mmdebstrap: qemu-system-x86 from sid into a private root (about a minute)"
mmdebstrap --variant=essential --mode=auto --quiet \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --include=qemu-system-x86 sid "$OUT/root" "$m" \
    || die "mmdebstrap of sid's qemu-system-x86 failed"
cat > "$OUT/qemu-system-x86_64" <<'WRAP'
#!/bin/sh
# Runs sid's QEMU from its private root (next to this file) through its loader.
R="$(dirname "$(readlink -f "$0")")/root"
exec "$R/lib64/ld-linux-x86-64.so.2" \
    --library-path "$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu" \
    "$R/usr/bin/qemu-system-x86_64" -L "$R/usr/share/qemu" -L "$R/usr/share/seabios" "$@"
WRAP
chmod +x "$OUT/qemu-system-x86_64"
"$OUT/qemu-system-x86_64" -device vfio-user-pci,help 2>&1 | grep -q x-pci-class-code \
    || die "the provisioned QEMU has no vfio-user-pci with x-pci-class-code"
echo "== $("$OUT/qemu-system-x86_64" --version | head -n1)"
