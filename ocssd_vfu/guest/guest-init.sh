#!/bin/sh
# /init of the test guest. It talks to the host runner (ocssd_vfu/guest/runner.py)
# over the second serial port, one text line per message:
#   guest: HELLO                 host: BOOT <n> <boots> | STOP
#   guest: RESULTS, base64 lines of a tar of /results, END
#   guest: EXIT <status>         host: OK
# The script itself (/run/ocssd/script, from the per-run initramfs the runner
# appends) writes to the console, which the runner streams to its stdout.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t configfs configfs /sys/kernel/config 2>/dev/null

ctl=/dev/ttyS1
if ! stty -F "$ctl" raw -echo 2>/dev/null; then
    echo "ocssd-vfu-init: no control port $ctl" >&2
    echo s > /proc/sysrq-trigger; poweroff -f
fi
exec 3<>"$ctl"
echo HELLO >&3
read -r word BOOT BOOTS <&3
if [ "$word" != BOOT ]; then
    echo "ocssd-vfu-init: host said '$word': no more boots" >&2
    poweroff -f
fi
export BOOT BOOTS

# nvme-cli 1.12 rejects numeric options until the RNG is initialised.
head -c 1 /dev/random >/dev/null

cd /root
sh /run/ocssd/script </dev/null 3>&-
status=$?
sync

echo RESULTS >&3
tar -C /results -cf - . | base64 >&3
echo END >&3
echo "EXIT $status" >&3
read -r ack <&3
if [ "$status" = 0 ] && [ "$BOOT" -lt "$BOOTS" ]; then
    reboot -f
fi
poweroff -f
