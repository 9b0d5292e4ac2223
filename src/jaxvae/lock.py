"""A folder's lock: one process at a time writes a run folder.

The lock is an advisory `flock` on the file `FOLDER/.lock`, which holds the holder's process id. The
kernel lets go of it when the holder exits, however it exits, so a lock left by a killed process is free
and the next writer takes it over. The holder removes the file as it lets go.
"""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from jaxvae.errors import InputError

LOCK_FILE = ".lock"


class FolderLocked(InputError):
    """Another process holds the folder's lock; `pid` is its process id (None in the instant between its
    taking the lock and writing its id)."""

    def __init__(self, folder: Path, pid: int | None):
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"{folder} is being written by {holder}: wait for it to end, or stop it")
        self.pid = pid


@contextmanager
def locked(folder: str | Path):
    """Hold the lock of `folder` (an existing folder) while the block runs; FolderLocked when another
    process holds it, InputError when the folder cannot be written."""
    path = Path(folder) / LOCK_FILE
    fd = _acquire(path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # still held: a process that opened this file meanwhile retries on a new one
        os.close(fd)


def _acquire(path: Path) -> int:
    """A descriptor of `path` holding its exclusive lock, this process's id written in it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise InputError(f"cannot write {path.parent}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid(os.pread(fd, 32, 0))
            os.close(fd)
            raise FolderLocked(path.parent, pid) from None
        if _is_current(path, fd):
            break
        os.close(fd)  # the holder removed this file as it let go: lock the one at `path` now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise InputError(f"cannot write {path}: {e.strerror}") from None
    return fd


def _is_current(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        now, held = os.stat(path), os.fstat(fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
    except FileNotFoundError:
        return False


def _pid(text: bytes) -> int | None:
    try:
        return int(text.decode().strip())
    except ValueError:
        return None
