"""Provisioning: every external artefact the project runs on, built once into a
cache outside the checkout and keyed by a hash of the recipe that builds it.

Stdlib only: `make setup` runs this before the package (and its dependencies)
is installed.  Each recipe is a shell script in scripts/; this module decides
what is missing, runs the scripts with visible progress, and names the step
that failed.  Run it as `python -m ocssd_vfu.guest.provision`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"

HOST_PACKAGES = (
    # kernel build
    "build-essential", "bc", "flex", "bison", "libelf-dev", "libssl-dev", "cpio", "xz-utils",
    # private QEMU root
    "mmdebstrap",
    # libvfio-user
    "meson", "ninja-build", "pkg-config", "libjson-c-dev", "libcmocka-dev",
    # guest userland
    "busybox-static",
    # `ocssd-vfu top` is tested in a real terminal
    "tmux",
)


class ProvisionError(Exception):
    """A provisioning step failed; the message names the step."""


def cache_root() -> Path:
    return Path(os.environ.get("OCSSD_VFU_CACHE") or "~/.cache/ocssd-vfu").expanduser()


@dataclass(frozen=True)
class Recipe:
    name: str
    script: str
    inputs: tuple[str, ...]
    products: tuple[str, ...]
    description: str

    def key(self) -> str:
        digest = hashlib.sha256(self.name.encode())
        for rel in (f"scripts/{self.script}", "scripts/lib.sh", *self.inputs):
            digest.update(rel.encode() + b"\0" + (REPO / rel).read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    def path(self) -> Path:
        return cache_root() / f"{self.name}-{self.key()}"

    def ready(self) -> bool:
        return all((self.path() / p).exists() for p in self.products)

    def product(self, name: str) -> Path:
        return self.path() / name


QEMU = Recipe("qemu", "build-qemu.sh", (), ("qemu-system-x86_64",),
              "QEMU 11 with vfio-user-pci (sid, private root)")
LIBVFIO_USER = Recipe("libvfio-user", "build-libvfio-user.sh",
                      ("scripts/libvfio-user-robustness.patch",),
                      ("lib/libvfio-user.so.0", "include/libvfio-user.h"),
                      "libvfio-user 0b28d205 (release, 64 DMA regions, robustness patch)")
KERNEL = Recipe("kernel", "build-kernel.sh", ("scripts/guest-kernel.config",), ("bzImage",),
                "guest kernel 5.10 with LightNVM + pblk")
INITRAMFS = Recipe("initramfs", "build-initramfs.sh", ("ocssd_vfu/guest/guest-init.sh",),
                   ("base.cpio.gz",), "guest initramfs (busybox, nvme-cli 1.12, fio, e2fsprogs)")
RECIPES = (QEMU, LIBVFIO_USER, KERNEL, INITRAMFS)


def qemu_has_vfio_user(binary: str) -> bool:
    """The probe of environment.md: 10.1.0 lacks x-pci-class-code and the
    guest's NVMe driver does not bind without it."""
    try:
        out = subprocess.run([binary, "-device", "vfio-user-pci,help"], capture_output=True,
                             text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "x-pci-class-code" in out.stdout + out.stderr


def system_qemu() -> str | None:
    found = shutil.which("qemu-system-x86_64")
    return found if found and qemu_has_vfio_user(found) else None


def qemu_binary() -> Path:
    """The QEMU every runner uses: $OCSSD_VFU_QEMU, the system's if it is good
    enough, else the provisioned one."""
    override = os.environ.get("OCSSD_VFU_QEMU")
    if override:
        return Path(override)
    found = system_qemu()
    return Path(found) if found else QEMU.product("qemu-system-x86_64")


def missing_host_packages() -> list[str]:
    missing = []
    for pkg in HOST_PACKAGES:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                             text=True, check=False)
        if "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def install_host_packages(progress: Progress) -> None:
    missing = missing_host_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise ProvisionError(
            "host packages are missing: " + " ".join(missing)
            + "\n  install them (as root: `apt-get install " + " ".join(missing)
            + "`) or run `make setup` as root")
    apt = ["apt-get", "-o", "Acquire::Check-Valid-Until=false"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*apt, "install", "-y", "-q", "--no-install-recommends", *missing]
    log = progress.log_path("host-packages")
    with progress.step("host-packages", "installing " + " ".join(missing), log):
        # A fresh machine may have no package lists yet: update once and retry.
        if _run_logged(install, log, env) != 0 and (
                _run_logged([*apt, "update", "-q"], log, env) != 0
                or _run_logged(install, log, env) != 0):
            raise ProvisionError("apt-get install of the host packages failed")


def _run_logged(cmd: list[str], log: Path, env: dict[str, str]) -> int:
    with log.open("a") as out:
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                              stdin=subprocess.DEVNULL, check=False).returncode


class Progress:
    """Step lines with elapsed time; the recipe's `== ...` lines as they come."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()

    def log_path(self, name: str) -> Path:
        logs = cache_root() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"{name}.log"

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, name: str, what: str, log: Path) -> Iterator[None]:
        self.done += 1
        start = time.monotonic()
        self.say(f"[setup {self.done}/{self.total}] {name}: {what}")
        try:
            yield
        except ProvisionError as exc:
            self.say(f"[setup] FAILED at step '{name}': {exc}")
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-25:]
                self.say("  last lines of " + str(log) + ":\n    " + "\n    ".join(tail))
            raise
        elapsed = time.monotonic() - start
        self.say(f"[setup {self.done}/{self.total}] {name}: done in {elapsed:.0f} s")


def build(recipe: Recipe, progress: Progress) -> None:
    final = recipe.path()
    staging = final.with_name(f".staging-{final.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log = progress.log_path(f"{recipe.name}-{recipe.key()}")
    log.write_text("")
    env = dict(os.environ, OUT=str(staging), CACHE=str(cache_root()))
    with progress.step(recipe.name, f"building {recipe.description} (log: {log})", log):
        with log.open("a") as out:
            proc = subprocess.Popen(["bash", str(SCRIPTS / recipe.script)], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                                    text=True, errors="replace")
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if line.startswith("== ") or line.startswith("error:"):
                    progress.say("    " + line.rstrip())
            status = proc.wait()
        if status != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise ProvisionError(f"scripts/{recipe.script} exited with status {status}")
        missing = [p for p in recipe.products if not (staging / p).exists()]
        if missing:
            raise ProvisionError(f"scripts/{recipe.script} did not produce {', '.join(missing)}")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def package_is_current() -> bool:
    """Both cffi extensions are built, the binding against today's libvfio-user."""
    probe = ("import ocssd_vfu.dma.native, ocssd_vfu.vfu.binding as b, sys; "
             "sys.stdout.write(b.LIBVFIO_USER_DIR)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd="/", check=False)
    return out.returncode == 0 and out.stdout == str(LIBVFIO_USER.path())


def install_package(progress: Progress) -> None:
    log = progress.log_path("python-package")
    log.write_text("")
    with progress.step("python-package", f"pip install -e . (log: {log})", log):
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
               "-e", f"{REPO}[dev]"]
        if _run_logged(cmd, log, dict(os.environ)) != 0:
            raise ProvisionError("pip install -e . failed")
        if not package_is_current():
            raise ProvisionError("the installed package does not load its libvfio-user binding")


def provision(with_package: bool) -> None:
    with cache_lock():
        todo = [r for r in RECIPES if not r.ready() and not (r is QEMU and system_qemu())]
        missing_host = missing_host_packages()
        package = with_package and not package_is_current()
        progress = Progress(len(todo) + bool(missing_host) + package)
        install_host_packages(progress)
        for recipe in todo:
            build(recipe, progress)
        if package:
            install_package(progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.guest.provision",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-package", action="store_true",
                        help="only the cached artefacts, not `pip install -e .`")
    parser.add_argument("--print", choices=["cache", "qemu", "kernel", "initramfs", "libvfio-user"],
                        help="print where an artefact lives and exit")
    args = parser.parse_args(argv)
    if args.print:
        paths = {"cache": cache_root(), "qemu": qemu_binary(),
                 "kernel": KERNEL.product("bzImage"),
                 "initramfs": INITRAMFS.product("base.cpio.gz"),
                 "libvfio-user": LIBVFIO_USER.path()}
        print(paths[args.print])
        return 0
    try:
        provision(with_package=not args.no_package)
    except ProvisionError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
