"""Run a snippet in a child process that file permissions apply to, even when we run as root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Drops CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) from the child's effective set, so that
# even root is subject to file permissions (capset(2), version 3 headers). Lowering one's own
# effective capabilities is always allowed.
_DROP_DAC = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]
header, data = Header(0x20080522, 0), (Data * 2)()
assert libc.capget(ctypes.byref(header), data) == 0, ctypes.get_errno()
data[0].effective &= ~((1 << 1) | (1 << 2))
assert libc.capset(ctypes.byref(header), data) == 0, ctypes.get_errno()
"""


def run_without_file_privileges(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """
    Run ``python -c code args...`` from the source tree, as a process that cannot bypass file
    permissions (root gives up the capabilities that would let it).
    """
    prelude = _DROP_DAC if os.geteuid() == 0 else ""
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
