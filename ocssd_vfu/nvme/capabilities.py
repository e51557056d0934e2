"""What this controller offers, as the CAP and VS registers and Identify report it."""

from ocssd_vfu.spec.nvme import CAP_CSS_NVM, Cap

MQES = 1023            # max queue entries, 0-based
MAX_IO_QUEUES = 64
DOORBELL_STRIDE = 4    # DSTRD = 0
TIMEOUT_500MS = 20     # CAP.TO: 10 s
# CQR (contiguous queues required), CSS = NVM only; DSTRD and MPSMIN = MPSMAX (4 KiB) are 0.
CAP = Cap.build(mqes=MQES, cqr=1, to=TIMEOUT_500MS, css=CAP_CSS_NVM)
VERSION = 0x00010200   # 1.2.0: Linux then skips Identify CNS 03h (ocssd-spec.md 1.2)
