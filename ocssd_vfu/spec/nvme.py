"""NVMe 1.4 structures (base spec), declared once and named as the spec names them.

Cold-path users build/parse these with construct; the per-command path uses the
`struct` formats at the end, which tests/unit/test_spec_nvme.py checks against
the declarations.
"""

from __future__ import annotations

import enum
import struct

from construct import (
    Array,
    Bytes,
    BytesInteger,
    Const,
    Container,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Padding,
    Struct,
)

from ocssd_vfu.spec.bitfields import Bitfields, reserved

SQE_SIZE = 64
CQE_SIZE = 16
IDENTIFY_SIZE = 4096


class AdminOpcode(enum.IntEnum):
    DELETE_IO_SQ = 0x00
    CREATE_IO_SQ = 0x01
    GET_LOG_PAGE = 0x02
    DELETE_IO_CQ = 0x04
    CREATE_IO_CQ = 0x05
    IDENTIFY = 0x06
    ABORT = 0x08
    SET_FEATURES = 0x09
    GET_FEATURES = 0x0A
    ASYNC_EVENT_REQUEST = 0x0C
    NAMESPACE_MANAGEMENT = 0x0D
    FIRMWARE_COMMIT = 0x10
    FIRMWARE_IMAGE_DOWNLOAD = 0x11
    DEVICE_SELF_TEST = 0x14
    NAMESPACE_ATTACHMENT = 0x15
    KEEP_ALIVE = 0x18
    DOORBELL_BUFFER_CONFIG = 0x7C
    FORMAT_NVM = 0x80
    # Open-Channel SSD (vendor-specific admin range)
    OCSSD_SET_BAD_BLOCKS = 0xF1
    OCSSD_GET_BAD_BLOCKS = 0xF2
    OCSSD_GEOMETRY = 0xE2


class IoOpcode(enum.IntEnum):
    FLUSH = 0x00
    WRITE = 0x01
    READ = 0x02
    WRITE_UNCORRECTABLE = 0x04
    COMPARE = 0x05
    WRITE_ZEROES = 0x08
    DATASET_MANAGEMENT = 0x09
    # Open-Channel SSD vector commands
    VECTOR_CHUNK_RESET = 0x90
    VECTOR_CHUNK_WRITE = 0x91
    VECTOR_CHUNK_READ = 0x92
    VECTOR_CHUNK_COPY = 0x93


class IdentifyCns(enum.IntEnum):
    NAMESPACE = 0x00
    CONTROLLER = 0x01
    ACTIVE_NAMESPACES = 0x02
    NAMESPACE_DESCRIPTORS = 0x03


class FeatureId(enum.IntEnum):
    ARBITRATION = 0x01
    POWER_MANAGEMENT = 0x02
    TEMPERATURE_THRESHOLD = 0x04
    ERROR_RECOVERY = 0x05
    VOLATILE_WRITE_CACHE = 0x06
    NUMBER_OF_QUEUES = 0x07
    INTERRUPT_COALESCING = 0x08
    INTERRUPT_VECTOR_CONFIGURATION = 0x09
    WRITE_ATOMICITY = 0x0A
    ASYNC_EVENT_CONFIGURATION = 0x0B
    KEEP_ALIVE_TIMER = 0x0F


class LogPageId(enum.IntEnum):
    ERROR_INFORMATION = 0x01
    SMART_HEALTH = 0x02
    FIRMWARE_SLOT = 0x03
    COMMANDS_SUPPORTED_EFFECTS = 0x05
    OCSSD_CHUNK_INFORMATION = 0xCA


class Register(enum.IntEnum):
    """BAR0 offsets (spec 3.1)."""

    CAP = 0x00
    VS = 0x08
    INTMS = 0x0C
    INTMC = 0x10
    CC = 0x14
    CSTS = 0x1C
    NSSR = 0x20
    AQA = 0x24
    ASQ = 0x28
    ACQ = 0x30
    CMBLOC = 0x38
    CMBSZ = 0x3C
    DOORBELLS = 0x1000


# Controller registers' bitfields (NVMe 1.4 3.1), low bits first (spec/bitfields.py).
Cap = Bitfields(("mqes", 16), ("cqr", 1), ("ams", 2), reserved(5, 19), ("to", 8),
                ("dstrd", 4), ("nssrs", 1), ("css", 8), ("bps", 1), reserved(2, 46),
                ("mpsmin", 4), ("mpsmax", 4), ("pmrs", 1), ("cmbs", 1), reserved(6, 58))
Cc = Bitfields(("en", 1), reserved(3, 1), ("css", 3), ("mps", 4), ("ams", 3), ("shn", 2),
               ("iosqes", 4), ("iocqes", 4), reserved(8, 24))
Csts = Bitfields(("rdy", 1), ("cfs", 1), ("shst", 2), ("nssro", 1), ("pp", 1),
                 reserved(26, 6))
Aqa = Bitfields(("asqs", 12), reserved(4, 12), ("acqs", 12), reserved(4, 28))


class ShutdownStatus(enum.IntEnum):
    """CSTS.SHST."""

    NORMAL = 0b00
    OCCURRING = 0b01
    COMPLETE = 0b10


CAP_CSS_NVM = 1 << 0             # CAP.CSS bit 0: the NVM command set


SubmissionQueueEntry = Struct(
    "opc" / Int8ul,
    "flags" / Int8ul,            # FUSE [1:0], PSDT [7:6]
    "cid" / Int16ul,
    "nsid" / Int32ul,
    "cdw2" / Int32ul,
    "cdw3" / Int32ul,
    "mptr" / Int64ul,
    "prp1" / Int64ul,            # DPTR
    "prp2" / Int64ul,
    "cdw10" / Int32ul,
    "cdw11" / Int32ul,
    "cdw12" / Int32ul,
    "cdw13" / Int32ul,
    "cdw14" / Int32ul,
    "cdw15" / Int32ul,
)

CompletionQueueEntry = Struct(
    "dw0" / Int32ul,             # command specific (OCSSD: failed-LBA bitmap, low half)
    "dw1" / Int32ul,
    "sqhd" / Int16ul,
    "sqid" / Int16ul,
    "cid" / Int16ul,
    "status" / Int16ul,          # bit 0 phase tag, bits 15:1 status field
)

PowerStateDescriptor = Struct(
    "mp" / Int16ul,
    Padding(1),
    "flags" / Int8ul,
    "enlat" / Int32ul,
    "exlat" / Int32ul,
    "rrt" / Int8ul,
    "rrl" / Int8ul,
    "rwt" / Int8ul,
    "rwl" / Int8ul,
    "idlp" / Int16ul,
    "ips" / Int8ul,
    Padding(1),
    "actp" / Int16ul,
    "apw_aps" / Int8ul,
    Padding(9),
)

IdentifyController = Struct(
    "vid" / Int16ul,
    "ssvid" / Int16ul,
    "sn" / Bytes(20),
    "mn" / Bytes(40),
    "fr" / Bytes(8),
    "rab" / Int8ul,
    "ieee" / Bytes(3),
    "cmic" / Int8ul,
    "mdts" / Int8ul,
    "cntlid" / Int16ul,
    "ver" / Int32ul,
    "rtd3r" / Int32ul,
    "rtd3e" / Int32ul,
    "oaes" / Int32ul,
    "ctratt" / Int32ul,
    "rrls" / Int16ul,
    Padding(9),
    "cntrltype" / Int8ul,
    "fguid" / Bytes(16),
    "crdt1" / Int16ul,
    "crdt2" / Int16ul,
    "crdt3" / Int16ul,
    Padding(122),
    "oacs" / Int16ul,            # 256
    "acl" / Int8ul,
    "aerl" / Int8ul,
    "frmw" / Int8ul,
    "lpa" / Int8ul,
    "elpe" / Int8ul,
    "npss" / Int8ul,
    "avscc" / Int8ul,
    "apsta" / Int8ul,
    "wctemp" / Int16ul,
    "cctemp" / Int16ul,
    "mtfa" / Int16ul,
    "hmpre" / Int32ul,
    "hmmin" / Int32ul,
    "tnvmcap" / Bytes(16),
    "unvmcap" / Bytes(16),
    "rpmbs" / Int32ul,
    "edstt" / Int16ul,
    "dsto" / Int8ul,
    "fwug" / Int8ul,
    "kas" / Int16ul,
    "hctma" / Int16ul,
    "mntmt" / Int16ul,
    "mxtmt" / Int16ul,
    "sanicap" / Int32ul,
    "hmminds" / Int32ul,
    "hmmaxd" / Int16ul,
    "nsetidmax" / Int16ul,
    "endgidmax" / Int16ul,
    "anatt" / Int8ul,
    "anacap" / Int8ul,
    "anagrpmax" / Int32ul,
    "nanagrpid" / Int32ul,
    "pels" / Int32ul,
    Padding(156),
    "sqes" / Int8ul,             # 512
    "cqes" / Int8ul,
    "maxcmd" / Int16ul,
    "nn" / Int32ul,
    "oncs" / Int16ul,
    "fuses" / Int16ul,
    "fna" / Int8ul,
    "vwc" / Int8ul,
    "awun" / Int16ul,
    "awupf" / Int16ul,
    "nvscc" / Int8ul,
    "nwpc" / Int8ul,
    "acwu" / Int16ul,
    Padding(2),
    "sgls" / Int32ul,
    "mnan" / Int32ul,
    Padding(224),
    "subnqn" / Bytes(256),       # 768
    Padding(768),
    "nvmeof" / Bytes(256),       # 1792
    "psd" / Array(32, PowerStateDescriptor),  # 2048
    "vs" / Bytes(1024),          # 3072
)

LbaFormat = Struct(
    "ms" / Int16ul,
    "lbads" / Int8ul,
    "rp" / Int8ul,
)

IdentifyNamespace = Struct(
    "nsze" / Int64ul,
    "ncap" / Int64ul,
    "nuse" / Int64ul,
    "nsfeat" / Int8ul,
    "nlbaf" / Int8ul,            # 0-based
    "flbas" / Int8ul,
    "mc" / Int8ul,
    "dpc" / Int8ul,
    "dps" / Int8ul,
    "nmic" / Int8ul,
    "rescap" / Int8ul,
    "fpi" / Int8ul,
    "dlfeat" / Int8ul,
    "nawun" / Int16ul,
    "nawupf" / Int16ul,
    "nacwu" / Int16ul,
    "nabsn" / Int16ul,
    "nabo" / Int16ul,
    "nabspf" / Int16ul,
    "noiob" / Int16ul,
    "nvmcap" / Bytes(16),
    "npwg" / Int16ul,
    "npwa" / Int16ul,
    "npdg" / Int16ul,
    "npda" / Int16ul,
    "nows" / Int16ul,
    Padding(18),
    "anagrpid" / Int32ul,
    Padding(3),
    "nsattr" / Int8ul,
    "nvmsetid" / Int16ul,
    "endgid" / Int16ul,
    "nguid" / Bytes(16),
    "eui64" / Bytes(8),
    "lbaf" / Array(16, LbaFormat),   # 128
    Padding(192),
    "vs" / Bytes(3712),          # 384: vs[0] == 1 marks an OCSSD namespace for Linux
)

DatasetManagementRange = Struct(  # Dataset Management's data: up to 256 of these
    "context_attributes" / Int32ul,
    "length" / Int32ul,           # in logical blocks, 1-based
    "slba" / Int64ul,
)

SmartHealthLog = Struct(       # log page 02h
    "critical_warning" / Int8ul,
    "composite_temperature" / Int16ul,   # kelvin
    "available_spare" / Int8ul,
    "available_spare_threshold" / Int8ul,
    "percentage_used" / Int8ul,
    "endurance_group_critical_warning_summary" / Int8ul,
    Padding(25),
    "data_units_read" / BytesInteger(16, swapped=True),     # thousands of 512-byte units
    "data_units_written" / BytesInteger(16, swapped=True),
    "host_read_commands" / BytesInteger(16, swapped=True),
    "host_write_commands" / BytesInteger(16, swapped=True),
    "controller_busy_time" / BytesInteger(16, swapped=True),
    "power_cycles" / BytesInteger(16, swapped=True),
    "power_on_hours" / BytesInteger(16, swapped=True),
    "unsafe_shutdowns" / BytesInteger(16, swapped=True),
    "media_and_data_integrity_errors" / BytesInteger(16, swapped=True),
    "number_of_error_information_log_entries" / BytesInteger(16, swapped=True),
    "warning_composite_temperature_time" / Int32ul,
    "critical_composite_temperature_time" / Int32ul,
    "temperature_sensor" / Array(8, Int16ul),
    "thermal_management_temperature_1_transition_count" / Int32ul,
    "thermal_management_temperature_2_transition_count" / Int32ul,
    "total_time_for_thermal_management_temperature_1" / Int32ul,
    "total_time_for_thermal_management_temperature_2" / Int32ul,
    Padding(280),
)


class CriticalWarning(enum.IntFlag):
    AVAILABLE_SPARE = 1 << 0
    TEMPERATURE = 1 << 1
    RELIABILITY = 1 << 2
    READ_ONLY = 1 << 3
    VOLATILE_BACKUP = 1 << 4


FirmwareSlotLog = Struct(      # log page 03h, 512 bytes
    "afi" / Int8ul,               # active firmware info: bits 2:0 the active slot
    Padding(7),
    "frs" / Array(7, Bytes(8)),   # firmware revision of slots 1-7
    Padding(448),
)

CommandsSupportedAndEffectsLog = Struct(   # log page 05h
    "acs" / Array(256, Int32ul),           # admin commands, indexed by opcode
    "iocs" / Array(256, Int32ul),          # I/O commands, indexed by opcode
    Padding(2048),
)


class CommandEffects(enum.IntFlag):
    """One entry of the Commands Supported and Effects log."""

    CSUPP = 1 << 0      # command supported
    LBCC = 1 << 1       # logical block content change
    NCC = 1 << 2        # namespace capability change
    NIC = 1 << 3        # namespace inventory change
    CCC = 1 << 4        # controller capability change
    CSE_ONE_NAMESPACE = 1 << 16     # CSE: one command at a time per namespace
    CSE_ALL_NAMESPACES = 2 << 16    # CSE: no other command to any namespace meanwhile


class Oncs(enum.IntFlag):
    """Identify Controller ONCS: optional NVM commands."""

    COMPARE = 1 << 0
    WRITE_UNCORRECTABLE = 1 << 1
    DATASET_MANAGEMENT = 1 << 2
    WRITE_ZEROES = 1 << 3
    SAVE_AND_SELECT = 1 << 4     # Set Features Save, Get Features Select


class Oacs(enum.IntFlag):
    """Identify Controller OACS: optional admin commands."""

    SECURITY = 1 << 0
    FORMAT_NVM = 1 << 1
    FIRMWARE = 1 << 2
    NAMESPACE_MANAGEMENT = 1 << 3
    DEVICE_SELF_TEST = 1 << 4
    DIRECTIVES = 1 << 5
    NVME_MI = 1 << 6
    VIRTUALIZATION_MANAGEMENT = 1 << 7
    DOORBELL_BUFFER_CONFIG = 1 << 8


class Nsfeat(enum.IntFlag):
    """Identify Namespace NSFEAT: namespace features."""

    THIN_PROVISIONING = 1 << 0
    NSABP = 1 << 1               # namespace atomic boundary parameters
    DULBE = 1 << 2               # Deallocated or Unwritten Logical Block Error
    UIDREUSE = 1 << 3
    OPTPERF = 1 << 4             # NPWG..NOWS (and NPDG/NPDA) hold granularities


class Dlfeat(enum.IntFlag):
    """Identify Namespace DLFEAT: what a deallocated block reads as (bits 2:0)."""

    READS_ZEROES = 0x1
    READS_ONES = 0x2
    WRITE_ZEROES_DEALLOCATES = 1 << 3
    GUARD_CRC = 1 << 4


class MetadataCapabilities(enum.IntFlag):
    """Identify Namespace MC: where metadata may travel."""

    EXTENDED = 1 << 0            # within the data buffer, after each block
    SEPARATE = 1 << 1            # in a separate buffer (MPTR)


FLBAS_EXTENDED = 1 << 4          # Identify Namespace FLBAS: the format's metadata is extended


NamespaceDescriptorHeader = Struct(
    "nidt" / Int8ul,
    "nidl" / Int8ul,
    Const(b"\0\0"),
)

SglDescriptor = Struct(             # NVMe 1.4 Figure 110; the C walk reads these bytes
    "address" / Int64ul,
    "length" / Int32ul,
    Padding(3),
    "sgl_identifier" / Int8ul,         # descriptor type [7:4], subtype [3:0]
)


def blank(structure: Struct) -> Container:
    """Every field of `structure` zero: set the few that matter, then build."""
    return structure.parse(bytes(structure.sizeof()))


# Hot-path formats: the same layouts as SubmissionQueueEntry / CompletionQueueEntry.
SQE_FORMAT = struct.Struct("<BBHIIIQQQIIIIII")
CQE_FORMAT = struct.Struct("<IIHHHH")
DSM_RANGE_FORMAT = struct.Struct("<IIQ")  # DatasetManagementRange
SGL_DESCRIPTOR_FORMAT = struct.Struct("<QQ")  # SglDescriptor: address, length | identifier << 56
