"""server.heap: after `settle`, glibc's malloc serves an answer-sized block from its heap (kept for the next request)
instead of a fresh mmap returned to the system when freed (faulted in again each request)."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "settle":
    from cfai_cli.server.heap import settle
    settle()
before = libc.mallinfo2().hblks
block = bytearray(4 * 1024 * 1024)  # four images' worth of answers, more than glibc's first threshold (128 KiB)
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                    reason="glibc >= 2.33 (mallinfo2) only")
def test_after_settle_an_answer_sized_block_comes_from_the_heap() -> None:
    def mmapped(mode: str) -> str:  # a fresh process: nothing has moved the thresholds yet
        return subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert mmapped("plain") == "1"  # its own mmap, unmapped when freed
    assert mmapped("settle") == "0"  # from the heap, kept when freed
