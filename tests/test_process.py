"""Process tuning: glibc's malloc arenas limited before threads allocate, and freed memory reused."""

import subprocess
import sys

import pytest

from jaxvae import process

ARENA_PROBE = """
import ctypes, os, sys, tempfile, threading
from jaxvae import process

def heaps():  # glibc's malloc_info writes one <heap nr=...> per arena
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    path = os.path.join(tempfile.mkdtemp(), "info.xml")
    f = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
    libc.malloc_info(0, f)
    libc.fclose(f)
    return open(path).read().count("<heap nr=")

if sys.argv[1] == "limit":
    process.limit_malloc_arenas()
barrier, held = threading.Barrier(6), []

def allocate():  # 6 threads alive at once, each allocating: each would get an arena of its own
    held.append(bytearray(4096))
    barrier.wait()

threads = [threading.Thread(target=allocate) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(heaps())
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("ctypes").CDLL(None), "malloc_info"), reason="glibc only")
def test_malloc_arenas_are_limited_before_threads_allocate():
    """Threads that allocate get an arena each (7 for 6 threads and the main thread), unless
    `limit_malloc_arenas` ran first: then glibc's malloc_info reports MALLOC_ARENAS of them."""

    def arenas(mode):
        out = subprocess.run([sys.executable, "-c", ARENA_PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout)

    assert arenas("default") == 7
    assert arenas("limit") == process.MALLOC_ARENAS


REUSE_PROBE = """
import ctypes, resource, sys, threading
from jaxvae import process

if sys.argv[1] == "reuse":
    process.reuse_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
SIZE = 20 << 20
faults = []

def twice():  # on a thread of its own, as XLA's kernels run: a block allocated, written and freed, twice
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        block = libc.malloc(SIZE)
        ctypes.memset(block, 1, SIZE)
        libc.free(ctypes.c_void_p(block))
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

thread = threading.Thread(target=twice)
thread.start()
thread.join()
print(*faults)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("resource"), "RUSAGE_THREAD"), reason="Linux only")
def test_a_freed_block_under_the_threshold_is_reused_without_faulting_its_pages_again():
    """A 20 MiB block allocated, written and freed twice on one thread: by default glibc maps it on its own and
    unmaps it, so both writes fault in its pages (5,120 of 4 KiB); after `reuse_freed_memory` the second write
    reuses the first's memory and faults in under a hundredth of them."""

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", REUSE_PROBE, mode], capture_output=True, text=True, check=True)
        return [int(n) for n in out.stdout.split()]

    default, reused = faults("default"), faults("reuse")
    assert default[1] > 0.9 * default[0] > 0  # the default faults the pages in anew on every write
    assert reused[0] > 0 and reused[1] < default[1] / 100
