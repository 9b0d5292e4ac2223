"""Checkpoint files: Equinox leaf serialization (NumPy arrays, no pickle) and a SHA-256 trailer.

Every file is written atomically (temporary file, fsync, rename, fsync of the folder), so a crash
leaves either the old file or the new one; the checksum catches a file damaged afterwards.
"""

import hashlib
import io
import os
import tempfile
from pathlib import Path

from jaxvae.errors import InputError

TEMPORARY_SUFFIX = ".tmp"
_DIGEST_BYTES = 32  # SHA-256


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` by `data` through a temporary file renamed into place: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def remove_temporary_files(folder: Path) -> None:
    """Delete what a crash in the middle of `write_atomically` left in `folder`."""
    for tmp in folder.glob("*" + TEMPORARY_SUFFIX):
        tmp.unlink(missing_ok=True)


def save(path: Path, tree) -> None:
    """Write the array leaves of `tree` to `path`, followed by their SHA-256."""
    import equinox as eqx  # here, so that config (which writes with `write_atomically`) does not load JAX

    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    payload = buffer.getvalue()
    write_atomically(path, payload + hashlib.sha256(payload).digest())


def restore(path: Path, like):
    """Read a tree of the same structure as `like` from `path`; a damaged or foreign file is an InputError."""
    import equinox as eqx

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no checkpoint at {path}") from None
    except OSError as e:
        raise InputError(f"cannot read checkpoint {path}: {e.strerror}") from None
    payload, digest = raw[:-_DIGEST_BYTES], raw[-_DIGEST_BYTES:]
    if len(raw) < _DIGEST_BYTES or hashlib.sha256(payload).digest() != digest:
        raise InputError(f"damaged checkpoint {path}: truncated or corrupted (checksum mismatch)")
    f = io.BytesIO(payload)
    try:
        tree = eqx.tree_deserialise_leaves(f, like)
    except Exception as e:
        raise InputError(f"checkpoint {path} does not fit this run's model ({type(e).__name__}: {e})") from None
    if f.read(1):
        raise InputError(f"checkpoint {path} does not fit this run's model (it holds more arrays)")
    return tree
