"""Tuning of the process that runs JAX, done once by every command before its work (`cli.startup`): at most
two glibc malloc arenas, freed memory reused, and compiled programs kept on disk.
"""

import ctypes
from pathlib import Path

import jax

from jaxvae import download

M_ARENA_MAX = -8  # glibc's malloc.h: mallopt's parameters for the most arenas,
M_MMAP_THRESHOLD = -3  # the size from which a block is mapped on its own,
M_TRIM_THRESHOLD = -1  # and the free memory at an arena's top that it keeps
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 32 << 20  # glibc's largest
TRIM_THRESHOLD = 64 << 20


def limit_malloc_arenas() -> None:
    """Ask glibc's malloc for at most MALLOC_ARENAS arenas (elsewhere: nothing).

    glibc gives each thread that allocates an arena of its own, up to 8 per core, and memory freed into
    them stays with the process: XLA's threads grew a 10-epoch Fashion-MNIST run by 33 MiB, epoch by
    epoch (peak 559 MiB; 523 with two arenas, at the same speed). Call it before JAX starts its threads,
    as `jaxvae` does for every command.
    """
    _mallopt((M_ARENA_MAX, MALLOC_ARENAS))


def reuse_freed_memory() -> None:
    """Serve blocks under MMAP_THRESHOLD from glibc's arenas and keep up to TRIM_THRESHOLD of freed memory at
    an arena's top (elsewhere: nothing), as glibc's own adjustment would once it had seen such a block freed,
    but from the start and for good.

    XLA's CPU kernels allocate their buffers on every call. A buffer that malloc maps on its own, or carves
    from memory it gave back, is faulted in page by page on every call: the quadrature of 256 digits on
    128 x 128 points takes 7.9 s (8.1 s of system time against 5.8 s of user time) without this, 2.9 s with
    it (2-core CPU, `benchmarks/quadrature_speed.py`).
    """
    _mallopt((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _mallopt(*settings: tuple[int, int]) -> None:
    """glibc's mallopt(parameter, value) for each setting; nothing where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no glibc
        return
    for parameter, value in settings:
        mallopt(parameter, value)


def enable_compilation_cache(folder: Path | None = None) -> Path:
    """Keep compiled programs on disk, so a repeated command skips most of its compile time."""
    if folder is None:
        folder = download.cache_dir() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
