"""Checkpoint files: Equinox leaf serialization (NumPy arrays, no pickle), written atomically."""

import os
import tempfile
from pathlib import Path

import equinox as eqx

from jaxvae.errors import InputError


def save(path: Path, tree) -> None:
    """Write `tree` to `path` through a temporary file renamed into place: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            eqx.tree_serialise_leaves(f, tree)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def restore(path: Path, like):
    """Read a tree of the same structure as `like` from `path`; a damaged file is an InputError."""
    try:
        return eqx.tree_deserialise_leaves(path, like)
    except FileNotFoundError:
        raise InputError(f"no checkpoint at {path}") from None
    except Exception as e:
        raise InputError(f"damaged checkpoint {path}: {type(e).__name__}") from None
