"""Datasets as flat float32 arrays: the embedded `digits`, IDX folders, `.npz` and `.npy` files.

Every loader returns a `Dataset` whose rows are examples flattened to vectors of size d,
uint8 data scaled to [0, 1]. Anything wrong with the input raises `InputError`.
"""

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxvae.errors import InputError

SPLIT_SEED = 0  # the fixed seed of the train/test split for data without one
TEST_FRACTION = 0.2
TEST_BINARIZATION_SEED = 1  # test data is binarized once, the same way for every run
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Dataset:
    """Train and test examples of shape (n, d), labels of shape (n,) or None, `shape` of one example."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    shape: tuple[int, ...]


def load_dataset(name_or_path: str) -> Dataset:
    """`digits`, `fashion-mnist`, a folder of IDX files, or an `.npz`/`.npy` file."""
    if name_or_path == "digits":
        return _digits()
    if name_or_path == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise InputError(f"fashion-mnist not found in {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist")
        return _idx_folder(FASHION_MNIST_DIR)
    path = Path(name_or_path)
    if path.is_dir():
        return _idx_folder(path)
    if path.suffix in (".npz", ".npy"):
        if not path.is_file():
            raise InputError(f"no such file: {path}")
        return _array_file(path)
    if not path.exists() and path.suffix == "" and "/" not in name_or_path:
        raise InputError(f"unknown dataset {name_or_path!r}: use digits, fashion-mnist, a folder or a .npz/.npy file")
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    raise InputError(f"unsupported data file {path}: use a folder of IDX files or a .npz/.npy file")


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _split(bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int32))


def _array_file(path: Path) -> Dataset:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "x" not in archive:
                    raise InputError(f"{path} has no array named 'x' (found: {', '.join(archive.files) or 'none'})")
                x = archive["x"]
                y = archive["y"] if "y" in archive else None
        else:
            x, y = np.load(path, allow_pickle=False), None
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot read {path}: {e}") from None
    if y is not None and len(y) != len(x):
        raise InputError(f"{path}: {len(x)} examples but {len(y)} labels")
    return _split(_as_unit_float(x, path), None if y is None else y.astype(np.int32))


def _as_unit_float(x: np.ndarray, source) -> np.ndarray:
    """uint8 scaled to [0, 1]; other real data as float32; examples along the first axis."""
    if x.ndim < 2:
        raise InputError(f"{source}: expected an array of examples with rank >= 2, got shape {x.shape}")
    if len(x) == 0:
        raise InputError(f"{source}: no examples")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise InputError(f"{source}: unsupported dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{source}: contains NaN or infinite values")
    return x


def _split(x: np.ndarray, y: np.ndarray | None) -> Dataset:
    """A fixed, seeded split: TEST_FRACTION of the examples (at least one) held out for testing."""
    if len(x) < 2:
        raise InputError(f"need at least 2 examples to split into train and test, got {len(x)}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = max(1, int(round(TEST_FRACTION * len(x))))
    test, train = order[:n_test], order[n_test:]
    flat = x.reshape(len(x), -1)
    return Dataset(
        flat[train], None if y is None else y[train], flat[test], None if y is None else y[test], x.shape[1:]
    )


def _idx_folder(folder: Path) -> Dataset:
    arrays = {}
    for key, stem in IDX_FILES.items():
        candidates = [folder / stem, folder / (stem + ".gz")]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise InputError(f"{folder} lacks {stem}[.gz]: expected the four MNIST-format IDX files")
        arrays[key] = read_idx(found)
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or y.ndim != 1:
            raise InputError(f"{folder}: {part} images must be rank 3 and labels rank 1")
        if len(x) != len(y):
            raise InputError(f"{folder}: {len(x)} {part} images but {len(y)} labels")
        if len(x) == 0:
            raise InputError(f"{folder}: no {part} images")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise InputError(f"{folder}: train and test images differ in size")
    x_train, x_test = (_as_unit_float(arrays[k].reshape(len(arrays[k]), -1), folder) for k in ("x_train", "x_test"))
    return Dataset(
        x_train,
        arrays["y_train"].astype(np.int32),
        x_test,
        arrays["y_test"].astype(np.int32),
        arrays["x_train"].shape[1:],
    )


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000TTNN, NN big-endian int32 sizes, then data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: corrupt or truncated gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise InputError(f"{path}: not an IDX file (bad magic number)")
    dtype, rank = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise InputError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{rank}I", raw[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise InputError(f"{path}: IDX file has {len(raw)} bytes, its header promises {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def binarize(x: np.ndarray, seed: int) -> np.ndarray:
    """One Bernoulli sample of every pixel, with probability its grey value in [0, 1]."""
    return (np.random.default_rng(seed).random(x.shape, dtype=np.float32) < x).astype(np.float32)


def batch_indices(order, batch_size: int):
    """Cut `order` (n,) into batches of indices (ceil(n / B), B) and weights (same shape).

    The last batch is padded with index 0 at weight 0, so every example is used exactly once and
    every batch has one shape (one compiled program); weighted means ignore the padding.
    """
    import jax.numpy as jnp

    n = order.shape[0]
    n_batches = -(-n // batch_size)
    pad = n_batches * batch_size - n
    idx = jnp.concatenate([order, jnp.zeros(pad, order.dtype)]).reshape(n_batches, batch_size)
    weights = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)]).reshape(n_batches, batch_size)
    return idx, weights
