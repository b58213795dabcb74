"""The C heap of a serving process: blocks of a big answer's size kept for the next one, not returned and faulted in
again on every request. Standard library only; nothing to import (not even ctypes, ~7 ms at start-up).

glibc's malloc serves a block of 128 KiB or more with its own mmap at first and returns it to the system when it is
freed; freeing such a block raises that threshold to the block's size (up to 32 MiB) and the heap's trim threshold
to twice that (mallopt(3), "dynamic mmap threshold"). An images request (four ~1.3 MB answers held as they came,
their base64 sent as views of them: issue 25, round 8) frees its blocks at its end; with the thresholds where its own
blocks put them (~1.3 and ~2.7 MB) the heap was trimmed after each request and grown again in the next: ~2,000 page
faults and ~7 ms of system time a request through `cfai serve`, against ~20 and 0.3 ms before, when orjson's
reservations for rendering each image (~16 MB, freed untouched) had raised them as a side effect. `settle` raises
them the same way once, at start-up: one 16 MiB block allocated zeroed (calloc: mmap's pages, never touched, so
never resident) and freed. Blocks up to 16 MiB then come from the heap, which keeps up to 32 MiB free for the
next request. Elsewhere (another libc, another allocator) it is one allocation and one free, nothing else.
"""

from __future__ import annotations

SETTLE_BYTES = 16 * 1024 * 1024


def settle() -> None:
    """Raise glibc malloc's dynamic mmap and trim thresholds to 16 and 32 MiB (see the module docstring)."""
    block = bytes(SETTLE_BYTES)  # calloc: fresh zero pages from mmap, none of them touched
    del block
