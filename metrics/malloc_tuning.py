"""Give memory freed after a large NATS message back to the system (glibc only).

A usage reply is held as one bytes object, and nats-py copies it twice while it takes it
off the socket. glibc serves such a block from the heap once a block of that size has
been freed (its mmap threshold rises to the largest block freed, up to 32 MiB), and heap
memory freed between live objects is kept by the process. In a long-running listener
that turns the largest round ever seen into the resident size for ever: measured with
four 26 MB replies in `make bench BENCH=bench_ingest`, the listener's peak RSS went from
378 MB to 270 MB with a fixed threshold and two arenas.

A fixed mmap threshold keeps blocks of 128 KiB and more in their own mappings, returned
to the system as soon as they are freed; two arenas (instead of eight per core) stop the
parse and DB threads from each keeping a heap of their own. The MALLOC_MMAP_THRESHOLD_ and
MALLOC_ARENA_MAX environment variables, when set, win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger("metrics.malloc_tuning")

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2


def malloc_tune_for_large_messages() -> bool:
    """Set glibc's mmap threshold and arena count for this process; False where there is
    no glibc (musl, macOS) or the environment already chose."""
    name = ctypes.util.find_library("c")
    if not name or "libc.so" not in name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    done = False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) or done
    if "MALLOC_ARENA_MAX" not in os.environ:
        done = bool(mallopt(_M_ARENA_MAX, ARENA_MAX)) or done
    logger.debug("event=malloc_tuned applied=%s", done)
    return done
