"""The `ocssd-vfu` command."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ocssd_vfu.control import ctl, top
from ocssd_vfu.devices import MODES
from ocssd_vfu.guest import provision
from ocssd_vfu.imagetool import cli as image_cli
from ocssd_vfu.nvme.polling import DEFAULT_IDLE_US
from ocssd_vfu.timing.parameters import DEFAULT_CHANNEL_MBPS


def _guest(args: argparse.Namespace) -> int:
    from ocssd_vfu.guest.runner import GuestRun, run_guest

    run = GuestRun(
        script=args.script, timeout=args.timeout, boot_timeout=args.boot_timeout,
        boots=args.boots, results=args.results, accel=args.accel, memory_mib=args.memory,
        cpus=args.cpus, sockets=args.socket, images=args.image, serve_args=args.serve_arg,
        qemu_nvme=args.qemu_nvme, qemu_args=args.qemu_arg, kernel=args.kernel,
        initrd=args.initrd, append=args.append, verbose=args.verbose)
    return run_guest(run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _guest_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "guest", help="boot the test guest under QEMU and run a script in it",
        description="Boot the 5.10 test guest (LightNVM, pblk, nvme-cli 1.12, fio) under QEMU, "
        "run SCRIPT as root in it and exit with the script's status. Harness failures exit "
        "124 (timeout), 125 (QEMU failed), 126 (guest kernel panic), 127 (set-up failed); the "
        "message on stderr says which.")
    p.add_argument("--script", type=Path, required=True, help="shell script run by sh in the guest")
    p.add_argument("--socket", type=Path, action="append", default=[],
                   help="attach a vfio-user device already listening at PATH (repeatable)")
    p.add_argument("--image", type=Path, action="append", default=[],
                   help="start `ocssd-vfu serve` on IMG and attach it (repeatable)")
    p.add_argument("--serve-arg", action="append", default=[],
                   help="extra argument for the servers started by --image (repeatable)")
    p.add_argument("--qemu-nvme", type=Path, action="append", default=[], metavar="RAW_IMG",
                   help="attach QEMU's built-in NVMe device on a raw file (repeatable)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds before everything is killed (default 600)")
    p.add_argument("--boot-timeout", type=float, default=90.0,
                   help="seconds for each boot to reach /init (default 90)")
    p.add_argument("--boots", type=_positive, default=1,
                   help="boots within one QEMU; the script runs on each with $BOOT = 1..N")
    p.add_argument("--results", type=Path, help="host directory that receives the guest's /results")
    p.add_argument("--accel", choices=["tcg", "kvm"], default="tcg",
                   help="tcg (default) or kvm where it works")
    p.add_argument("--memory", type=int, default=1024, help="guest RAM in MiB (default 1024)")
    p.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default 2)")
    p.add_argument("--qemu-arg", action="append", default=[],
                   help="extra QEMU argument, as --qemu-arg=-foo (repeatable)")
    p.add_argument("--kernel", type=Path, help="your own guest kernel (bzImage)")
    p.add_argument("--initrd", type=Path,
                   help="your own base initramfs (its /init must speak guest-init.sh's protocol)")
    p.add_argument("--append", default="", help="extra kernel command-line arguments")
    p.add_argument("--verbose", action="store_true", help="print the QEMU command line")
    p.set_defaults(func=_guest)


def _setup(args: argparse.Namespace) -> int:
    return provision.main(["--no-package"] if args.no_package else [])


def _serve(args: argparse.Namespace) -> int:
    from ocssd_vfu.app import ServeOptions, serve

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="ocssd-vfu serve: %(message)s")
    # Every serve option's dest is the ServeOptions field of the same name.
    return serve(ServeOptions(**{f.name: getattr(args, f.name)
                                 for f in dataclasses.fields(ServeOptions)}))


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="serve an image as a vfio-user NVMe device",
                       description="Listen on SOCKET and serve IMAGE to a QEMU that attaches "
                       "with -device vfio-user-pci. Stops on SIGTERM/SIGINT (image synced).")
    p.add_argument("--socket", type=Path, required=True, help="unix socket to listen on")
    p.add_argument("--image", type=Path, required=True,
                   help="an OCSSD image (`ocssd-vfu image create`) or any raw file")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="auto (default): an LNVM image is served as an OCSSD device (2.0 or "
                   "1.2, as the image says; an FTL image as --mode ftl), any other file as a "
                   "plain NVMe namespace; nvme/ocssd/ftl insist on one")
    p.add_argument("--sec-size", type=int, choices=[512, 4096], default=4096,
                   help="logical block size of a plain namespace (default 4096)")
    p.add_argument("--md-size", type=int, default=0, metavar="N",
                   help="bytes of metadata per block of a plain namespace (default 0), kept "
                   "after all the data as QEMU does: the file holds size // (sec-size + N) blocks")
    p.add_argument("--extended-lba", action="store_true",
                   help="metadata travels inside the data buffer, after each block "
                   "(FLBAS bit 4); without it, in a separate buffer (MPTR)")
    p.add_argument("--once", action="store_true", help="exit when the first QEMU goes away")
    p.add_argument("--serial", help="controller serial number (default: ocssd-vfu- and a hash "
                   "of the image's path, so that every image is its own NVMe subsystem)")
    p.add_argument("--trace", nargs="?", const="-", metavar="FILE",
                   help="one line per command (queue, cid, opcode, LBAs as grp/pu/chk/sec, "
                   "PRPs, status) to FILE, or stderr")
    p.add_argument("--trace-format", choices=["text", "json"], default="text",
                   help="text (default) or one JSON object per line, for tools")
    p.add_argument("--no-sgl", dest="sgl", action="store_false",
                   help="no SGLs: Identify SGLS 0, I/O commands with PSDT != 0 are refused")
    p.add_argument("--no-shadow-doorbells", dest="shadow_doorbells", action="store_false",
                   help="no Doorbell Buffer Config (OACS bit 8 off): every doorbell is an "
                   "MMIO write (a vfio-user message)")
    p.add_argument("--poll", action="store_true",
                   help="poll the shadow doorbells while I/O comes, instead of waiting for "
                   "doorbell messages: fewer vfio-user messages and lower latency, at the "
                   "cost of one host core while busy (README \"Polling mode\")")
    p.add_argument("--poll-idle-us", type=int, default=DEFAULT_IDLE_US, metavar="N",
                   help="with --poll: back to waiting for messages after N µs without a new "
                   f"command (default {DEFAULT_IDLE_US})")
    p.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                   help="plain Reads and Writes and OCSSD 2.0 vector Reads and Writes through "
                   "the Python path too, not the C fast path, and every doorbell through "
                   "Python, not the C doorbell path (for comparisons; --trace does the same)")
    ocssd = p.add_argument_group("OCSSD devices")
    ocssd.add_argument("--volatile", action="store_true",
                       help="keep every change in RAM; the image file is never written")
    ocssd.add_argument("--sync-interval", type=float, default=0.0, metavar="SECONDS",
                       help="also make the image durable every SECONDS (default: only at "
                       "Flush, shutdown and exit)")
    ocssd.add_argument("--no-early-reset", dest="early_reset", action="store_false",
                       help="refuse resets of OPEN chunks (Invalid Reset); MCCAP bit 2 off")
    ocssd.add_argument("--chunk-state", type=Path, metavar="FILE",
                       help="impose chunk states at start (qemu-nvme lchunkstate syntax)")
    ocssd.add_argument("--write-fail", type=Path, metavar="FILE",
                       help="inject write failures (qemu-nvme lwritefail syntax; 1.2: "
                       "ch= lun= pln= blk= pg= writefail_prob=)")
    ocssd.add_argument("--reset-fail", type=Path, metavar="FILE",
                       help="inject reset failures (qemu-nvme lresetfail syntax; 1.2 erases: "
                       "ch= lun= blk= resetfail_prob=)")
    ocssd.add_argument("--read-fail", type=Path, metavar="FILE",
                       help="OCSSD 1.2: inject read failures (ch= lun= pln= blk= pg= "
                       "status=ECC|HIGH_ECC readfail_prob=)")
    ocssd.add_argument("--fault-seed", type=int, default=0,
                       help="seed of the failure-probability draws (default 0)")
    ftl = p.add_argument_group("device-side FTL (--mode ftl; README \"Device-side FTL\")")
    ftl.add_argument("--op-percent", type=int, metavar="N",
                     help="over-provisioning when the FTL is formatted, 0..99 (default 7)")
    ftl.add_argument("--gc-threshold", type=int, metavar="CHUNKS",
                     help="free chunks below which idle-time GC runs (default: the larger "
                     "of 5 %% of the data chunks and min_free_chunks + PUs)")
    ftl.add_argument("--gc-policy", choices=["greedy", "cost-benefit"], default="greedy",
                     help="GC victim choice (default greedy)")
    ftl.add_argument("--reformat", action="store_true",
                     help="erase what the image holds when it is served in another mode "
                     "(an FTL with --mode ocssd, Open-Channel data with --mode ftl)")
    timing = p.add_argument_group("flash timing (OCSSD devices; README \"Timing model\")")
    timing.add_argument("--timing", action="store_true",
                        help="complete every media operation at the time the flash model "
                        "says (per PU, per channel, with a write buffer); off by default")
    timing.add_argument("--channel-mbps", type=int, default=DEFAULT_CHANNEL_MBPS, metavar="MB/S",
                        help=f"bandwidth of each channel (2.0 group, 1.2 channel), 10^6 "
                        f"bytes/s (default {DEFAULT_CHANNEL_MBPS})")
    timing.add_argument("--write-buffer-sectors", type=int, metavar="N",
                        help="write-buffer sectors per PU (default: MW_CUNITS + one write "
                        "unit; 1.2: 8 pages + one multi-plane page; 0: no buffer)")
    timing.add_argument("--timing-lead-us", type=int, default=0, metavar="US",
                        help="wake this much before a completion is due and spin (default 0)")
    for name, what in (("trdt", "read (2.0 TRDT, 1.2 tRDT)"),
                       ("twrt", "program of one ws_opt unit (2.0 TWRT)"),
                       ("tcrst", "chunk reset (2.0 TCRST)"),
                       ("tprt", "page program (1.2 tPRT)"), ("tbet", "block erase (1.2 tBET)")):
        timing.add_argument(f"--{name}", type=int, metavar="NS",
                            help=f"typical {what} time in ns for this run, instead of the "
                            "image's; the geometry reports it")
    ocssd.add_argument("--pe-cycles", type=_positive, metavar="N",
                       help="endurance: every reset (1.2: erase) spends a cycle, WLI is the "
                       "share spent, the reset after N fails and the chunk goes OFFLINE "
                       "(default: no wear)")
    p.add_argument("--control", type=Path, metavar="PATH",
                   help="QMP control socket (README \"Control socket\"): query the device, "
                   "inject faults and watch events while it serves")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=_serve)


def _demo(args: argparse.Namespace) -> int:
    from ocssd_vfu import demo

    return demo.main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ocssd-vfu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _guest_parser(sub)
    _serve_parser(sub)
    image_cli.add_parser(sub)
    ctl.add_parser(sub)
    top.add_parser(sub)
    setup = sub.add_parser(
        "setup", help="provision QEMU, libvfio-user, the guest kernel and initramfs")
    setup.add_argument("--no-package", action="store_true", help="skip `pip install -e .`")
    setup.set_defaults(func=_setup)
    demo = sub.add_parser("demo", help="the demo: boot the guest and show the device at work")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
