"""How the process's C allocator hands memory back to the kernel [ours].

Every training step frees and allocates the same activation and gradient buffers again. glibc's
malloc, left to itself, returns the freed top of its heap to the kernel once it exceeds a threshold that
follows the largest mapped block freed so far (``M_TRIM_THRESHOLD``, twice the dynamic ``M_MMAP_THRESHOLD``),
so the next step touches fresh pages: about 1.9 million page faults and 3-4 s of kernel time in a
160-step ER-ACE run on 32x32 images (``wscl speed --end-to-end`` shows the effect). Fixing both
thresholds keeps freed memory in the process for reuse. Allocation does not enter the arithmetic (torch
aligns every CPU buffer to 64 bytes whatever malloc returns), so no number changes.
"""
from __future__ import annotations

import ctypes
import os

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 256 << 20  # free heap top kept for reuse before it goes back to the kernel
MMAP_THRESHOLD = 32 << 20   # blocks from here up get their own mapping: the most glibc's moving threshold reaches
# A user who configured the allocator (glibc tunables, another malloc preloaded) keeps their choice.
USER_SETTINGS = ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                 "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

retaining = False  # whether this process's allocator now keeps freed memory (read by the benchmarks)


def is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or not a GNU system
        return False


def retain_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds for the rest of the process; returns whether it did. A no-op
    off glibc (macOS, musl) and where the environment already configures the allocator."""
    global retaining
    if not is_glibc() or any(name in os.environ for name in USER_SETTINGS):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    # Each accepted call also stops glibc from moving the thresholds itself, so both must be set: one fixed
    # alone (the other frozen where it stood: 128 KiB at start) faults far more often than before. Only the mmap
    # threshold can be refused (some glibc versions cap it), and a refusal changes nothing: it goes first.
    retaining = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return retaining
