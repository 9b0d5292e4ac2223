"""Process tuning: glibc's malloc arenas limited before threads allocate."""

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
