"""`ocssd-vfu guest`: boot the test guest under QEMU, run a script in it, and
report how it ended.

The guest's /init (guest-init.sh) and this runner talk over the second serial
port, which QEMU connects to a unix socket the runner listens on; the console
(first serial port) is streamed to stdout and watched for kernel panics.
Everything a run starts (QEMU, servers, the temporary directory) is removed
when it ends, whatever the reason.
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ocssd_vfu.guest import initramfs
from ocssd_vfu.guest.provision import INITRAMFS, KERNEL, qemu_binary
from ocssd_vfu.guest.qemu_cmdline import GuestMachine

PANIC_MARKER = b"Kernel panic - not syncing"
SERVER_START_TIMEOUT = 30.0


class Ending(enum.IntEnum):
    """Exit statuses of a run that did not end with the script's own status."""

    TIMEOUT = 124
    QEMU_FAILED = 125
    KERNEL_PANIC = 126
    SETUP_FAILED = 127


@dataclass
class GuestRun:
    script: Path
    timeout: float = 600.0
    boot_timeout: float = 90.0
    boots: int = 1
    results: Path | None = None
    accel: str = "tcg"
    memory_mib: int = 1024
    cpus: int = 2
    sockets: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    serve_args: list[str] = field(default_factory=list)
    qemu_nvme: list[Path] = field(default_factory=list)
    qemu_args: list[str] = field(default_factory=list)
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    verbose: bool = False


class RunFailed(Exception):
    def __init__(self, ending: Ending, message: str) -> None:
        super().__init__(message)
        self.ending = ending


@dataclass
class Observed:
    """What the runner learned while the guest ran."""

    boots_started: int = 0
    script_status: int | None = None
    panic: bool = False
    qemu_stderr: bytearray = field(default_factory=bytearray)


def say(message: str) -> None:
    print(f"ocssd-vfu guest: {message}", file=sys.stderr, flush=True)


async def _pump_console(stream: trio.abc.ReceiveStream, seen: Observed,
                        cancel: trio.CancelScope) -> None:
    out = sys.stdout.buffer
    tail = b""
    async for chunk in stream:
        out.write(chunk)
        out.flush()
        window = tail + chunk
        if PANIC_MARKER in window:
            seen.panic = True
            # Let the panic's backtrace reach the console before stopping.
            with trio.move_on_after(1.0):
                async for more in stream:
                    out.write(more)
                    out.flush()
            cancel.cancel()
            return
        tail = window[-len(PANIC_MARKER):]


async def _pump_stderr(stream: trio.abc.ReceiveStream, seen: Observed) -> None:
    async for chunk in stream:
        seen.qemu_stderr += chunk
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()


class LineChannel:
    """Newline-framed text over the control socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def receive_line(self) -> str | None:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        return line.decode(errors="replace").strip("\r\x00 ")

    async def send_line(self, text: str) -> None:
        await self.stream.send_all(text.encode() + b"\n")


async def _control(channel: LineChannel, run: GuestRun, seen: Observed,
                   booted: trio.Event) -> None:
    while (line := await channel.receive_line()) is not None:
        word, _, arg = line.partition(" ")
        if word == "HELLO":
            seen.boots_started += 1
            booted.set()
            if seen.boots_started > run.boots:
                say(f"the guest rebooted more often than --boots {run.boots} allows")
                await channel.send_line("STOP")
            else:
                await channel.send_line(f"BOOT {seen.boots_started} {run.boots}")
        elif word == "RESULTS":
            await _receive_results(channel, run.results)
        elif word == "EXIT":
            seen.script_status = int(arg)
            await channel.send_line("OK")


async def _receive_results(channel: LineChannel, into: Path | None) -> None:
    encoded = []
    while (line := await channel.receive_line()) is not None and line != "END":
        encoded.append(line)
    if into is None:
        return
    try:
        archive = base64.b64decode("".join(encoded), validate=False)
    except binascii.Error as exc:
        raise RunFailed(Ending.QEMU_FAILED, f"garbled results from the guest: {exc}") from exc
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


async def _start_server(image: Path, serve_args: list[str], socket: Path,
                        nursery: trio.Nursery) -> trio.Process:
    cmd = [sys.executable, "-m", "ocssd_vfu", "serve", "--once", "--socket", str(socket),
           "--image", str(image), *serve_args]
    proc: trio.Process = await nursery.start(
        lambda task_status: trio.run_process(cmd, check=False, stdin=subprocess.DEVNULL,
                                             task_status=task_status))
    with trio.move_on_after(SERVER_START_TIMEOUT):
        while not socket.exists():
            if proc.returncode is not None:
                raise RunFailed(Ending.SETUP_FAILED,
                                f"`ocssd-vfu serve` for {image} exited with status "
                                f"{proc.returncode} before listening (is there a server in this "
                                "version of ocssd_vfu?)")
            await trio.sleep(0.05)
        return proc
    raise RunFailed(Ending.SETUP_FAILED, f"`ocssd-vfu serve` did not listen on {socket} "
                                         f"within {SERVER_START_TIMEOUT:.0f} s")


def _machine(run: GuestRun, workdir: Path, sockets: list[Path]) -> GuestMachine:
    kernel = run.kernel or KERNEL.product("bzImage")
    base = run.initrd or INITRAMFS.product("base.cpio.gz")
    for what, path in (("kernel", kernel), ("initramfs", base)):
        if not path.exists():
            raise RunFailed(Ending.SETUP_FAILED, f"no guest {what} at {path}: run `make setup`")
    initrd = workdir / "initrd"
    initramfs.write_run_initrd(initrd, base, run.script)
    return GuestMachine(
        qemu=qemu_binary(), kernel=kernel, initrd=initrd, console_append=run.append,
        accel=run.accel, memory_mib=run.memory_mib, cpus=run.cpus,
        reboot_allowed=run.boots > 1, vfio_user_sockets=sockets,
        qemu_nvme_images=run.qemu_nvme, control_socket=workdir / "ctl.sock",
        qmp_socket=workdir / "qmp.sock", extra_args=run.qemu_args)


async def _run_guest(run: GuestRun, workdir: Path) -> tuple[int | None, Observed, bool]:
    """Returns QEMU's exit status, what was seen, and whether the run timed out."""
    seen = Observed()
    result: tuple[int | None, Observed, bool] | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_sigterm, nursery.cancel_scope)
        sockets = list(run.sockets)
        for index, image in enumerate(run.images):
            sock = workdir / f"ocssd{index}.sock"
            await _start_server(image, run.serve_args, sock, nursery)
            sockets.append(sock)
        machine = _machine(run, workdir, sockets)
        argv = machine.argv()
        if run.verbose:
            say("QEMU command line:\n  " + " ".join(_quote(a) for a in argv))
        listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await listener.bind(str(machine.control_socket))
        listener.listen(1)
        result = await _supervise(run, argv, listener, seen)
        nursery.cancel_scope.cancel()
    if result is None:  # SIGTERM cancelled the run
        raise KeyboardInterrupt
    return result


async def _stop_on_sigterm(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _supervise(run: GuestRun, argv: list[str], listener: trio.socket.SocketType,
                     seen: Observed) -> tuple[int | None, Observed, bool]:
    async with trio.open_nursery() as nursery:
        qemu: trio.Process = await nursery.start(
            lambda task_status: trio.run_process(
                argv, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, task_status=task_status))
        assert qemu.stdout is not None and qemu.stderr is not None
        watch = trio.CancelScope()
        nursery.start_soon(_pump_stderr, qemu.stderr, seen)
        nursery.start_soon(_pump_console, qemu.stdout, seen, watch)
        with watch, trio.move_on_after(run.timeout) as deadline:
            await _serve_control(run, listener, qemu, seen)
        if qemu.returncode is None:
            qemu.kill()
    return qemu.returncode, seen, deadline.cancelled_caught


async def _serve_control(run: GuestRun, listener: trio.socket.SocketType, qemu: trio.Process,
                         seen: Observed) -> None:
    booted = trio.Event()
    async with trio.open_nursery() as nursery:
        async def accept_and_serve() -> None:
            sock, _ = await listener.accept()
            await _control(LineChannel(trio.SocketStream(sock)), run, seen, booted)

        async def boot_watchdog() -> None:
            with trio.move_on_after(run.boot_timeout):
                await booted.wait()
                return
            hint = " (is KVM usable here? try --accel tcg)" if run.accel == "kvm" else ""
            say(f"the guest did not reach /init within {run.boot_timeout:.0f} s{hint}")
            nursery.cancel_scope.cancel()

        nursery.start_soon(accept_and_serve)
        nursery.start_soon(boot_watchdog)
        await qemu.wait()
        # QEMU has exited: the control stream ends; nothing more will come.
        nursery.cancel_scope.cancel()


def _outcome(run: GuestRun, qemu_status: int | None, seen: Observed, timed_out: bool) -> int:
    if seen.panic:
        raise RunFailed(Ending.KERNEL_PANIC, "the guest kernel panicked (console above)")
    if timed_out:
        raise RunFailed(Ending.TIMEOUT, f"timed out after {run.timeout:.0f} s; QEMU killed")
    if seen.boots_started == 0:
        detail = seen.qemu_stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise RunFailed(Ending.QEMU_FAILED,
                        f"QEMU exited with status {qemu_status} before the guest booted"
                        + (": " + " | ".join(detail) if detail else ""))
    if seen.script_status is None:
        raise RunFailed(Ending.QEMU_FAILED,
                        f"QEMU exited (status {qemu_status}) without the script finishing")
    if qemu_status not in (0, None):
        raise RunFailed(Ending.QEMU_FAILED, f"QEMU failed with status {qemu_status}")
    return seen.script_status


def _quote(arg: str) -> str:
    return arg if all(c.isalnum() or c in "-_=,./:@" for c in arg) else f"'{arg}'"


def run_guest(run: GuestRun) -> int:
    """Run the guest; returns the exit status for the command line."""
    if not run.script.is_file():
        say(f"no such script: {run.script}")
        return Ending.SETUP_FAILED
    # Socket paths are limited to 107 bytes: keep the directory short.
    workdir = Path(tempfile.mkdtemp(prefix="ocssd-vfu-", dir="/tmp"))
    failure: RunFailed | None = None
    interrupted = False
    try:
        qemu_status, seen, timed_out = trio.run(_run_guest, run, workdir)
        status = _outcome(run, qemu_status, seen, timed_out)
    except* RunFailed as group:
        failure = group.exceptions[0]  # type: ignore[assignment]
    except* KeyboardInterrupt:
        interrupted = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        say("interrupted; QEMU and servers stopped")
        return 130
    if failure is not None:
        say(str(failure))
        return failure.ending
    if status != 0:
        say(f"the guest script exited with status {status}")
    return status
