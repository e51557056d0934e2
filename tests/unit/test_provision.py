"""Provisioning: cache location, recipe keys, the mirror read at run time."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ocssd_vfu.guest import provision
from ocssd_vfu.guest.provision import KERNEL, LIBVFIO_USER, REPO, Recipe


def test_cache_root_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCSSD_VFU_CACHE", raising=False)
    assert provision.cache_root() == Path.home() / ".cache" / "ocssd-vfu"
    monkeypatch.setenv("OCSSD_VFU_CACHE", "/srv/cache")
    assert provision.cache_root() == Path("/srv/cache")
    assert KERNEL.path().parent == Path("/srv/cache")


def test_recipe_key_follows_its_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provision, "REPO", tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "lib.sh").write_text("lib\n")
    (tmp_path / "scripts" / "build-x.sh").write_text("build\n")
    (tmp_path / "input.cfg").write_text("A=1\n")
    recipe = Recipe("x", "build-x.sh", ("input.cfg",), ("out",), "x")
    first = recipe.key()
    assert recipe.key() == first
    (tmp_path / "input.cfg").write_text("A=2\n")
    assert recipe.key() != first
    (tmp_path / "input.cfg").write_text("A=1\n")
    assert recipe.key() == first
    (tmp_path / "scripts" / "lib.sh").write_text("lib changed\n")
    assert recipe.key() != first


def test_the_kernel_recipe_covers_its_config() -> None:
    assert "scripts/guest-kernel.config" in KERNEL.inputs


def test_mirror_is_read_from_the_system_apt_sources() -> None:
    command = f"CACHE=/nonexistent source {REPO}/scripts/lib.sh; mirror_uri"
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.startswith(("http://", "https://"))
    assert not out.endswith("/")


def _registry_hosts() -> set[str]:
    """Hosts of the registries this machine uses, read from its own configuration."""
    hosts = set()
    sources = [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        if path.exists():
            for word in path.read_text().split():
                if "://" in word:
                    hosts.add(word.split("://", 1)[1].split("/", 1)[0])
    pip = subprocess.run(["pip", "config", "list"], capture_output=True, text=True, check=False)
    for word in pip.stdout.replace("'", " ").split():
        if "://" in word:
            hosts.add(word.split("://", 1)[1].split("/", 1)[0])
    try:  # pip's default index, as pip itself names it
        from pip._internal.models.index import PyPI
        hosts |= {PyPI.netloc, PyPI.file_storage_domain}
    except ImportError:
        pass
    npm = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True,
                         check=False) if shutil.which("npm") else None
    if npm and "://" in npm.stdout:
        hosts.add(npm.stdout.split("://", 1)[1].split("/", 1)[0])
    return {h for h in hosts if h}


def test_no_registry_host_is_written_in_the_repository() -> None:
    hosts = _registry_hosts()
    assert hosts, "found no registry configuration to check against"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    for rel in tracked:
        path = REPO / rel
        if path.is_file():
            text = path.read_bytes().decode(errors="replace")
            for host in hosts:
                assert host not in text, f"{rel} names the registry host {host}"


def test_libvfio_user_headers_are_provisioned() -> None:
    assert LIBVFIO_USER.ready()
    assert (LIBVFIO_USER.path() / "include" / "pci_caps" / "dsn.h").exists()
