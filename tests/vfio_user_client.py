"""A minimal vfio-user client speaking the socket protocol directly (no VM).

It sends what QEMU's `vfio-user-pci` sends, message by message: VERSION first,
then device/region/IRQ queries, region reads and writes (optionally posted,
i.e. NO_REPLY), DMA_MAP with an fd passed by SCM_RIGHTS, DMA_UNMAP, SET_IRQS
with eventfds and DEVICE_RESET.

Wire layouts (little-endian, packed), from libvfio-user's include/vfio-user.h
and <linux/vfio.h>:
- header: msg_id u16, cmd u16, msg_size u32 (header included), flags u32
  (bits 3:0 type: 0 command, 1 reply; bit 4 no_reply; bit 5 error), error_no u32;
- VERSION: major u16, minor u16, NUL-terminated JSON capabilities;
- DEVICE_GET_INFO: argsz, flags, num_regions, num_irqs (u32 each);
- DEVICE_GET_REGION_INFO: argsz, flags, index, cap_offset u32; size, offset u64;
- DEVICE_GET_IRQ_INFO: argsz, flags, index, count (u32 each);
- DEVICE_SET_IRQS: argsz, flags, index, start, count (u32 each), eventfds as
  SCM_RIGHTS;
- REGION_READ/WRITE: offset u64, region u32, count u32, data;
- DMA_MAP: argsz, flags u32; offset, addr, size u64 (fd as SCM_RIGHTS);
- DMA_UNMAP: argsz, flags u32; addr, size u64.
"""

from __future__ import annotations

import array
import enum
import json
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any


class Command(enum.IntEnum):
    VERSION = 1
    DMA_MAP = 2
    DMA_UNMAP = 3
    DEVICE_GET_INFO = 4
    DEVICE_GET_REGION_INFO = 5
    DEVICE_GET_REGION_IO_FDS = 6
    DEVICE_GET_IRQ_INFO = 7
    DEVICE_SET_IRQS = 8
    REGION_READ = 9
    REGION_WRITE = 10
    DMA_READ = 11
    DMA_WRITE = 12
    DEVICE_RESET = 13
    DIRTY_PAGES = 14


class Region(enum.IntEnum):
    """libvfio-user's PCI region indices (= VFIO_PCI_*_REGION_INDEX)."""

    BAR0 = 0
    BAR1 = 1
    BAR2 = 2
    BAR3 = 3
    BAR4 = 4
    BAR5 = 5
    ROM = 6
    CONFIG = 7
    VGA = 8
    MIGRATION = 9


class Irq(enum.IntEnum):
    """VFIO_PCI_*_IRQ_INDEX."""

    INTX = 0
    MSI = 1
    MSIX = 2
    ERR = 3
    REQ = 4


HEADER = struct.Struct("<HHIII")
HEADER_SIZE = HEADER.size                  # 16
FLAG_TYPE_MASK = 0xF
FLAG_TYPE_COMMAND = 0
FLAG_TYPE_REPLY = 1
FLAG_NO_REPLY = 1 << 4
FLAG_ERROR = 1 << 5

VERSION = struct.Struct("<HH")
DEVICE_INFO = struct.Struct("<IIII")
REGION_INFO = struct.Struct("<IIIIQQ")     # 32 bytes
IRQ_INFO = struct.Struct("<IIII")
IRQ_SET = struct.Struct("<IIIII")          # 20 bytes
REGION_ACCESS = struct.Struct("<QII")      # 16 bytes
DMA_MAP = struct.Struct("<IIQQQ")          # 32 bytes
DMA_UNMAP = struct.Struct("<IIQQ")         # 24 bytes

# <linux/vfio.h>
DEVICE_FLAGS_RESET = 1 << 0
DEVICE_FLAGS_PCI = 1 << 1
REGION_INFO_FLAG_READ = 1 << 0
REGION_INFO_FLAG_WRITE = 1 << 1
REGION_INFO_FLAG_MMAP = 1 << 2
REGION_INFO_FLAG_CAPS = 1 << 3
IRQ_INFO_EVENTFD = 1 << 0
IRQ_SET_DATA_NONE = 1 << 0
IRQ_SET_DATA_BOOL = 1 << 1
IRQ_SET_DATA_EVENTFD = 1 << 2
IRQ_SET_ACTION_MASK = 1 << 3
IRQ_SET_ACTION_UNMASK = 1 << 4
IRQ_SET_ACTION_TRIGGER = 1 << 5
DMA_REGION_READ = 1 << 0
DMA_REGION_WRITE = 1 << 1
DMA_UNMAP_FLAG_ALL = 1 << 1

# What QEMU 11.1 sends in its VERSION message (vfio-user.md 1.3).
QEMU_CAPABILITIES: dict[str, Any] = {"capabilities": {
    "migration": {"pgsize": 4096, "max_bitmap_size": 268435456},
    "max_msg_fds": 16, "max_data_xfer_size": 1048576, "pgsizes": 4096,
    "max_dma_maps": 65535, "write_multiple": True}}

MAX_REPLY_FDS = 16


class VfioUserError(OSError):
    """The server answered a request with an error reply (errno in `.errno`)."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection."""


@dataclass(frozen=True)
class Header:
    msg_id: int
    cmd: int
    size: int
    flags: int
    error: int

    @property
    def type(self) -> int:
        return self.flags & FLAG_TYPE_MASK

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)


@dataclass(frozen=True)
class Reply:
    header: Header
    payload: bytes
    fds: list[int]


@dataclass(frozen=True)
class DeviceInfo:
    argsz: int
    flags: int
    num_regions: int
    num_irqs: int


@dataclass(frozen=True)
class RegionInfo:
    argsz: int
    flags: int
    index: int
    cap_offset: int
    size: int
    offset: int


@dataclass(frozen=True)
class IrqInfo:
    argsz: int
    flags: int
    index: int
    count: int


def command_name(cmd: int) -> str:
    try:
        return Command(cmd).name
    except ValueError:
        return f"command {cmd}"


def pack_header(msg_id: int, cmd: int, size: int, flags: int = 0, error: int = 0) -> bytes:
    return HEADER.pack(msg_id & 0xFFFF, cmd & 0xFFFF, size & 0xFFFFFFFF, flags, error)


class VfioUserClient:
    """One connection to a vfio-user server; requests are synchronous."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._next_id = 0x100
        self.server_version: tuple[int, int] | None = None
        self.server_caps: dict[str, Any] | None = None

    @classmethod
    def connect(cls, path: str | os.PathLike[str], timeout: float = 5.0) -> VfioUserClient:
        """Connect like QEMU (which blocks in connect while the server's one-slot
        backlog is full), but give up after `timeout`; replies are awaited as long."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    sock.connect(os.fspath(path))
                    break
                except BlockingIOError:  # EAGAIN: backlog full, the server is busy
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> VfioUserClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw messages ------------------------------------------------------------------------
    def send(self, cmd: int, payload: bytes = b"", fds: tuple[int, ...] | list[int] = (),
             no_reply: bool = False) -> int:
        """Send one command message; returns its msg_id."""
        msg_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFF
        flags = FLAG_TYPE_COMMAND | (FLAG_NO_REPLY if no_reply else 0)
        self.send_raw(pack_header(msg_id, cmd, HEADER_SIZE + len(payload), flags) + payload,
                      fds)
        return msg_id

    def send_raw(self, data: bytes, fds: tuple[int, ...] | list[int] = ()) -> None:
        """Bytes as they are (a header, garbage...), in one sendmsg with `fds` attached."""
        ancillary = []
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sent = self.sock.sendmsg([data], ancillary)
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def _recv_exact(self, length: int) -> tuple[bytes, list[int]]:
        data = bytearray()
        fds: list[int] = []
        while len(data) < length:
            chunk, ancdata, _flags, _addr = self.sock.recvmsg(
                length - len(data), socket.CMSG_SPACE(MAX_REPLY_FDS * 4))
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(cdata) - len(cdata) % 4
                    fds.extend(array.array("i", cdata[:usable]))
            if not chunk:
                for fd in fds:
                    os.close(fd)
                raise ConnectionClosed(f"server closed the connection ({len(data)} of "
                                       f"{length} bytes read)")
            data += chunk
        return bytes(data), fds

    def recv_message(self) -> Reply:
        raw, fds = self._recv_exact(HEADER_SIZE)
        header = Header(*HEADER.unpack(raw))
        if header.size < HEADER_SIZE:
            raise ValueError(f"reply with an impossible size {header.size}")
        payload, more = self._recv_exact(header.size - HEADER_SIZE)
        return Reply(header, payload, fds + more)

    def recv_reply(self, msg_id: int, cmd: int) -> Reply:
        """The reply to `msg_id`; an error reply raises VfioUserError."""
        reply = self.recv_message()
        header = reply.header
        if header.type != FLAG_TYPE_REPLY or header.msg_id != msg_id or header.cmd != cmd:
            raise ValueError(f"unexpected message {header} (waiting for the reply to "
                             f"msg {msg_id:#x}, cmd {cmd})")
        if header.is_error:
            for fd in reply.fds:
                os.close(fd)
            raise VfioUserError(header.error, f"{command_name(cmd)}: {os.strerror(header.error)}")
        return reply

    def request(self, cmd: int, payload: bytes = b"",
                fds: tuple[int, ...] | list[int] = ()) -> Reply:
        return self.recv_reply(self.send(cmd, payload, fds), cmd)

    # -- commands ----------------------------------------------------------------------------
    def negotiate(self, major: int = 0, minor: int = 0,
                  caps: dict[str, Any] | None = None) -> tuple[int, int, dict[str, Any]]:
        """VERSION: returns the server's (major, minor, capabilities JSON)."""
        body = json.dumps(QEMU_CAPABILITIES if caps is None else caps).encode() + b"\0"
        reply = self.request(Command.VERSION, VERSION.pack(major, minor) + body)
        smajor, sminor = VERSION.unpack_from(reply.payload)
        text = reply.payload[VERSION.size:]
        if not text.endswith(b"\0"):
            raise ValueError(f"server capabilities are not NUL-terminated: {text!r}")
        parsed = json.loads(text[:-1].decode())
        self.server_version, self.server_caps = (smajor, sminor), parsed
        return smajor, sminor, parsed

    def device_info(self) -> DeviceInfo:
        reply = self.request(Command.DEVICE_GET_INFO, DEVICE_INFO.pack(DEVICE_INFO.size, 0, 0, 0))
        return DeviceInfo(*DEVICE_INFO.unpack_from(reply.payload))

    def region_info(self, index: int, argsz: int = REGION_INFO.size) -> tuple[RegionInfo, Reply]:
        """GET_REGION_INFO as QEMU asks it (argsz 32 first). Received fds are the caller's."""
        reply = self.request(Command.DEVICE_GET_REGION_INFO,
                             REGION_INFO.pack(argsz, 0, index, 0, 0, 0))
        return RegionInfo(*REGION_INFO.unpack_from(reply.payload)), reply

    def irq_info(self, index: int) -> IrqInfo:
        reply = self.request(Command.DEVICE_GET_IRQ_INFO,
                             IRQ_INFO.pack(IRQ_INFO.size, 0, index, 0))
        return IrqInfo(*IRQ_INFO.unpack_from(reply.payload))

    def set_irq_eventfds(self, index: int, start: int, fds: list[int]) -> None:
        """SET_IRQS TRIGGER|EVENTFD: `fds` become vectors start.. (QEMU's enable path)."""
        flags = IRQ_SET_ACTION_TRIGGER | IRQ_SET_DATA_EVENTFD
        self.request(Command.DEVICE_SET_IRQS,
                     IRQ_SET.pack(IRQ_SET.size, flags, index, start, len(fds)), fds)

    def disable_irqs(self, index: int) -> None:
        flags = IRQ_SET_ACTION_TRIGGER | IRQ_SET_DATA_NONE
        self.request(Command.DEVICE_SET_IRQS, IRQ_SET.pack(IRQ_SET.size, flags, index, 0, 0))

    def region_read(self, region: int, offset: int, count: int) -> bytes:
        reply = self.request(Command.REGION_READ, REGION_ACCESS.pack(offset, region, count))
        r_offset, r_region, r_count = REGION_ACCESS.unpack_from(reply.payload)
        data = reply.payload[REGION_ACCESS.size:]
        if (r_offset, r_region, r_count) != (offset, region, count) or len(data) != count:
            raise ValueError(f"bad REGION_READ reply {(r_offset, r_region, r_count)} with "
                             f"{len(data)} bytes for {(offset, region, count)}")
        return data

    def region_write(self, region: int, offset: int, data: bytes, posted: bool = False) -> None:
        """REGION_WRITE; `posted` sends it with NO_REPLY, as QEMU does for BAR writes."""
        payload = REGION_ACCESS.pack(offset, region, len(data)) + data
        if posted:
            self.send(Command.REGION_WRITE, payload, no_reply=True)
        else:
            self.request(Command.REGION_WRITE, payload)

    def read32(self, region: int, offset: int) -> int:
        return int.from_bytes(self.region_read(region, offset, 4), "little")

    def read64(self, region: int, offset: int) -> int:
        return int.from_bytes(self.region_read(region, offset, 8), "little")

    def write32(self, region: int, offset: int, value: int, posted: bool = False) -> None:
        self.region_write(region, offset, value.to_bytes(4, "little"), posted)

    def dma_map(self, addr: int, size: int, fd: int | None, offset: int = 0,
                flags: int = DMA_REGION_READ | DMA_REGION_WRITE) -> None:
        self.request(Command.DMA_MAP, DMA_MAP.pack(DMA_MAP.size, flags, offset, addr, size),
                     () if fd is None else (fd,))

    def dma_unmap(self, addr: int, size: int, flags: int = 0) -> None:
        self.request(Command.DMA_UNMAP, DMA_UNMAP.pack(DMA_UNMAP.size, flags, addr, size))

    def reset(self) -> None:
        self.request(Command.DEVICE_RESET)
