"""Datasets as flat float32 arrays: `digits`, `mnist`, `fashion-mnist`, IDX folders, image folders, `.npz`/`.npy`.

Every loader returns a `Dataset` whose rows are examples flattened to vectors of size d, uint8 data
scaled to [0, 1]. Anything wrong with the input raises `InputError`.
"""

import dataclasses
import gzip
import hashlib
import importlib.util
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxvae import download
from jaxvae.errors import ImageSizesDiffer, InputError
from jaxvae.keys import DataSeed

TEST_FRACTION = 0.2
NAMED_IDX = ("mnist", "fashion-mnist")  # found locally or downloaded (see `download`)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Dataset:
    """Train and test examples of shape (n, d), labels of shape (n,) or None, `shape` of one example;
    `classes`, when the labels have names (an image folder's class subfolders), the name of label i;
    `source`, what `load_dataset` read: a dataset's name or an absolute path ("" for arrays made otherwise);
    `c_train`, `c_test`: each example's condition flattened, (n, m) float32, or None (an .npz's `c`);
    `x_std_train`: (n, d) standard deviations of the training examples, or None (an .npz's `x_std_train`, M1's
    q(z1|x) that `--binarize redraw` draws the inputs from)."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    shape: tuple[int, ...]
    classes: tuple[str, ...] = ()
    source: str = ""
    c_train: np.ndarray | None = None
    c_test: np.ndarray | None = None
    x_std_train: np.ndarray | None = None


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    data_dir: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    progress: bool = True,
) -> Dataset:
    """`digits`, `mnist`, `fashion-mnist`, a folder of IDX files or images, or an `.npz`/`.npy` file.

    `mnist` and `fashion-mnist` are looked for in `data_dir` (or its subfolder of that name), then
    Debian's folder (Fashion-MNIST), then the cache folder, and downloaded there when missing.
    Their local copies must be the published files (`download.CONTENT_MD5`). Images are resized to
    `image_size` (height, width) when given. The result's `source` is the name, or the path made absolute.
    """
    name_or_path = os.fspath(name_or_path)
    if name_or_path == "digits":
        return dataclasses.replace(_digits(), source=name_or_path)
    if name_or_path in NAMED_IDX:
        data = _idx_folder(_named_folder(name_or_path, data_dir, progress), name_or_path)
        return dataclasses.replace(data, source=name_or_path)
    return dataclasses.replace(_read_path(name_or_path, image_size), source=str(Path(name_or_path).resolve()))


def _read_path(name_or_path: str, image_size: tuple[int, int] | None) -> Dataset:
    """The dataset of a folder of IDX files or images, or of an `.npz`/`.npy` file."""
    path = Path(name_or_path)
    if is_image_folder(path):
        return _image_folder(path, image_size)
    if path.is_dir():
        return _idx_folder(path)
    if path.suffix in (".npz", ".npy"):
        if not path.is_file():
            raise InputError(f"no such file: {path}")
        return _array_file(path)
    if not path.exists() and path.suffix == "" and "/" not in name_or_path:
        raise InputError(
            f"unknown dataset {name_or_path!r}: use digits, mnist, fashion-mnist, a folder or a .npz/.npy file"
        )
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    raise InputError(f"unsupported data file {path}: use a folder of IDX files or images, or a .npz/.npy file")


def is_image_folder(path: str | os.PathLike) -> bool:
    """Whether `load_dataset` reads `path` as a folder of images (the data `image_size` resizes): a folder
    without IDX files."""
    path = Path(path)
    return path.is_dir() and not any("-ubyte" in p.name for p in path.iterdir())


def _named_folder(name: str, data_dir: str | Path | None, progress: bool) -> Path:
    """The first local folder holding the four IDX files of `name`, else the cache after downloading."""
    candidates = []
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise InputError(f"--data-dir {data_dir} is not a folder")
        candidates += [data_dir / name, data_dir]
    if name == "fashion-mnist":
        candidates.append(FASHION_MNIST_DIR)
    cache = download.cache_dir() / name
    for folder in [*candidates, cache]:
        if all(_idx_file(folder, stem) for stem in IDX_FILES.values()):
            return folder
    return download.fetch(name, cache, progress=progress)


def _idx_file(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / stem, folder / (stem + ".gz")) if p.is_file()), None)


def _digits() -> Dataset:
    """scikit-learn's digits, read from the file it ships, which its `load_digits` reads: importing
    scikit-learn would take a second more of every command on the digits."""
    spec = importlib.util.find_spec("sklearn")  # where the package is, without importing it
    assert spec is not None and spec.submodule_search_locations, "scikit-learn is one of jaxvae's dependencies"
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",")  # a row an image: its 8 x 8 pixels row by row, 0 to 16, then its label
    return _split(table[:, :-1].reshape(-1, 8, 8).astype(np.float32) / 16.0, table[:, -1].astype(np.int32))


def _array_file(path: Path) -> Dataset:
    """An .npy file of examples x, or an .npz file of `x` (split by `_split`) or of `x_train` and `x_test` (its
    own split), each with optional labels `y` (`y_train`, `y_test`) and conditions `c` (`c_train`, `c_test`)."""
    try:
        if path.suffix == ".npy":
            arrays = {"x": np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
    except Exception as e:
        raise InputError(f"cannot read {path}: {e}") from None
    if "x" in arrays:
        x = _as_unit_float(arrays["x"], path)
        y, c = arrays.get("y"), arrays.get("c")
        return _split(
            x, None if y is None else _labels(y, len(x), path), c=None if c is None else _conditions(c, len(x), path)
        )
    if "x_train" not in arrays or "x_test" not in arrays:
        found = ", ".join(arrays) or "none"
        raise InputError(f"{path} has neither an array 'x' nor 'x_train' and 'x_test' (found: {found})")
    parts = {}
    for part in ("train", "test"):
        x = _as_unit_float(arrays[f"x_{part}"], f"{path} x_{part}")
        y, c = arrays.get(f"y_{part}"), arrays.get(f"c_{part}")
        parts[part] = (x, None if y is None else _labels(y, len(x), f"{path} y_{part}"), c)
    (x_train, y_train, c_train), (x_test, y_test, c_test) = parts["train"], parts["test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InputError(f"{path}: x_train's examples have shape {x_train.shape[1:]}, x_test's {x_test.shape[1:]}")
    if (y_train is None) != (y_test is None) or (c_train is None) != (c_test is None):
        raise InputError(
            f"{path}: labels or conditions for one split only: give y_train with y_test, c_train with c_test"
        )
    if c_train is not None:
        c_train, c_test = (
            _conditions(c_train, len(x_train), f"{path} c_train"),
            _conditions(c_test, len(x_test), f"{path} c_test"),
        )
        if c_train.shape[1] != c_test.shape[1]:
            raise InputError(f"{path}: c_train has {c_train.shape[1]} values per example, c_test {c_test.shape[1]}")
    x_std = arrays.get("x_std_train")
    x_std_train = None if x_std is None else _standard_deviations(x_std, x_train.shape, f"{path} x_std_train")
    flat = (x.reshape(len(x), -1) for x in (x_train, x_test))
    return Dataset(
        next(flat),
        y_train,
        next(flat),
        y_test,
        x_train.shape[1:],
        c_train=c_train,
        c_test=c_test,
        x_std_train=x_std_train,
    )


def _standard_deviations(std: np.ndarray, shape: tuple[int, ...], source) -> np.ndarray:
    """Standard deviations of the examples of `shape`, finite and >= 0, as float32 rows (n, d)."""
    if not (isinstance(std, np.ndarray) and std.shape == shape and np.issubdtype(std.dtype, np.floating)):
        raise InputError(f"{source}: expected floats of the examples' shape {shape}, got {_describe(std)}")
    if not np.all(np.isfinite(std) & (std >= 0)):
        raise InputError(f"{source}: standard deviations must be finite and at least 0")
    return std.reshape(len(std), -1).astype(np.float32)


def _conditions(c: np.ndarray, n: int, source) -> np.ndarray:
    """Conditions of shape (n, ...), real and finite, as float32 rows (n, m)."""
    if not (isinstance(c, np.ndarray) and c.ndim >= 2):
        raise InputError(
            f"{source}: conditions 'c' must be an array of shape (examples, ...) of rank >= 2 (a (n, 1) array for one "
            f"value per example), got {_describe(c)}"
        )
    if not (np.issubdtype(c.dtype, np.floating) or np.issubdtype(c.dtype, np.integer) or c.dtype == bool):
        raise InputError(f"{source}: conditions must be real numbers, got {c.dtype}")
    if len(c) != n:
        raise InputError(f"{source}: {n} examples but {len(c)} conditions")
    if c[0].size == 0:
        raise InputError(f"{source}: conditions of shape {c.shape} hold no values")
    rows = c.reshape(n, -1).astype(np.float32)
    if not np.all(np.isfinite(rows)):
        raise InputError(f"{source}: conditions contain NaN or infinite values")
    return rows


def _labels(y: np.ndarray, n: int, source) -> np.ndarray:
    """Integer labels of shape (n,)."""
    if not (isinstance(y, np.ndarray) and y.ndim == 1 and np.issubdtype(y.dtype, np.integer)):
        raise InputError(f"{source}: labels must be a rank-1 integer array, got {_describe(y)}")
    if len(y) != n:
        raise InputError(f"{source}: {n} examples but {len(y)} labels")
    return y.astype(np.int32)


def _describe(a) -> str:
    return f"{a.dtype} of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__


def _as_unit_float(x: np.ndarray, source) -> np.ndarray:
    """uint8 scaled to [0, 1]; other real data as float32; examples along the first axis."""
    if not isinstance(x, np.ndarray):
        raise InputError(f"{source}: expected an array of examples, got {_describe(x)}")
    if x.ndim < 2:
        raise InputError(f"{source}: expected an array of examples with rank >= 2, got shape {x.shape}")
    if x.size == 0:
        raise InputError(f"{source}: no data (shape {x.shape})")
    if x.dtype == np.uint8:  # one pass; `x.astype(np.float32) / 255` writes a second array, 20 times slower
        return np.divide(x, np.float32(255), out=_aligned_float32(x.shape))
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise InputError(f"{source}: unsupported dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{source}: contains NaN or infinite values")
    return x


def _aligned_float32(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialized float32 array whose data start on a 64-byte boundary: on a CPU, `jax.device_put`
    then uses its memory in place instead of copying it (for Fashion-MNIST, 188 MB less)."""
    size = 4 * int(np.prod(shape))
    raw = np.empty(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + size].view(np.float32).reshape(shape)


def _split(x: np.ndarray, y: np.ndarray | None, classes: tuple[str, ...] = (), c: np.ndarray | None = None) -> Dataset:
    """A fixed, seeded split: TEST_FRACTION of the examples (at least one) held out for testing; labels y (n,) and
    conditions c (n, m) with their examples."""
    if len(x) < 2:
        raise InputError(f"need at least 2 examples to split into train and test, got {len(x)}")
    order = np.random.default_rng(DataSeed.SPLIT).permutation(len(x))
    n_test = max(1, int(round(TEST_FRACTION * len(x))))
    test, train = order[:n_test], order[n_test:]
    flat = x.reshape(len(x), -1)
    y_train, y_test, c_train, c_test = (None if a is None else a[rows] for a in (y, c) for rows in (train, test))
    return Dataset(flat[train], y_train, flat[test], y_test, x.shape[1:], classes, c_train=c_train, c_test=c_test)


def _idx_folder(folder: Path, name: str | None = None) -> Dataset:
    """The four IDX files of `folder`; those of the named dataset `name` (`NAMED_IDX`) when given, which
    `_check_copy` checks."""
    arrays = {}
    for key, stem in IDX_FILES.items():
        found = _idx_file(folder, stem)
        if found is None:
            raise InputError(f"{folder} lacks {stem}[.gz]: expected the four MNIST-format IDX files")
        raw = _idx_bytes(found)
        if name is not None:
            _check_copy(raw, found, name, stem)
        arrays[key] = _parse_idx(raw, found)
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


def _image_folder(folder: Path, size: tuple[int, int] | None) -> Dataset:
    """PNG/JPEG images in `folder` (unlabelled) or in its class subfolders (label = sorted folder index,
    the folder names the dataset's `classes`).

    Greyscale images give examples of shape (H, W); if any image is colour, all are RGB (H, W, 3).
    All must have one size unless `size` (H, W) is given, to which each is resized (else ImageSizesDiffer).
    """
    loose = _images_in(folder)
    classes = [sub for sub in sorted(folder.iterdir()) if sub.is_dir() and _images_in(sub)]
    if loose and classes:
        raise InputError(f"{folder} holds both images and class folders: put every image in a class folder")
    if not loose and not classes:
        raise InputError(f"{folder} holds neither the four MNIST-format IDX files nor PNG/JPEG images")
    labelled = [(f, label) for label, sub in enumerate(classes) for f in _images_in(sub)]
    files = loose or [f for f, _ in labelled]
    labels = None if loose else np.array([label for _, label in labelled], np.int32)
    images = [_read_image(f, size) for f in files]
    if any(im.ndim == 3 for im in images):
        images = [np.repeat(im[..., None], 3, axis=-1) if im.ndim == 2 else im for im in images]
    for f, im in zip(files, images, strict=True):
        if im.shape[:2] != images[0].shape[:2]:
            raise ImageSizesDiffer(
                f"images differ in size ({files[0].name} is {images[0].shape[0]}x{images[0].shape[1]}, "
                f"{f.name} is {im.shape[0]}x{im.shape[1]})"
            )
    return _split(_as_unit_float(np.stack(images), folder), labels, tuple(sub.name for sub in classes))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8, (H, W) if greyscale else (H, W, 3), resized to `size` (H, W) if given."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise InputError(f"{path}: {image.mode} images (16-bit or float) are not supported: use 8-bit")
            image = image.convert("L" if image.mode in ("1", "L", "LA") else "RGB")
            if size is not None:
                image = image.resize((size[1], size[0]))
            return np.asarray(image, np.uint8)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{path}: not a readable image ({e})") from None


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _check_copy(raw: bytes, path: Path, name: str, stem: str) -> None:
    """InputError unless `raw`, the uncompressed content of `path`, is the file `stem` of the named dataset
    `name` (its MD5 in `download.CONTENT_MD5`); the message names the file it is when it is another one
    of the named datasets' files."""
    digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    expected = download.CONTENT_MD5[name][stem]
    if digest == expected:
        return
    title = download.TITLES[name]
    known = [(n, s) for n, files in download.CONTENT_MD5.items() for s, d in files.items() if d == digest]
    if known:
        other, other_stem = known[0]
        fix = "rename the files" if other == name else f"pass --dataset {other}, or put {title}'s files there"
        raise InputError(f"{path} is {download.TITLES[other]}'s {other_stem}, not {title}'s {stem}: {fix}")
    raise InputError(
        f"{path} is not {title}'s {stem} (MD5 {digest}, {title}'s is {expected}): a damaged or other copy; "
        f"to train on it as it is, pass --dataset {path.parent}"
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000TTNN, NN big-endian int32 sizes, then data."""
    path = Path(path)
    return _parse_idx(_idx_bytes(path), path)


def _idx_bytes(path: Path) -> bytes:
    """The content of an IDX file, uncompressed when its name ends in .gz."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path}: corrupt or truncated gzip file ({e})") from None


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """The array of an IDX file's content `raw` (read from `path`, which errors name)."""
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


def split_validation(data: Dataset, fraction: float) -> tuple[Dataset, np.ndarray]:
    """Carve `fraction` of the training examples (at least one; none when 0) into a validation set.

    The split is seeded (DataSeed.VALIDATION_SPLIT), the same in every run, so validation ELBOs compare across
    runs. Returns the dataset without those examples (their labels, conditions and standard deviations gone
    with them), and them, shape (n_valid, d).
    """
    n = len(data.x_train)
    if fraction == 0:
        return data, data.x_train[:0]
    n_valid = max(1, int(round(fraction * n)))
    if n_valid >= n:
        raise InputError(f"--validation-fraction {fraction} leaves no training examples out of {n}")
    order = np.random.default_rng(DataSeed.VALIDATION_SPLIT).permutation(n)
    valid, train = order[:n_valid], np.sort(order[n_valid:])
    y_train, c_train, x_std_train = (
        None if a is None else a[train] for a in (data.y_train, data.c_train, data.x_std_train)
    )
    kept = dataclasses.replace(
        data, x_train=data.x_train[train], y_train=y_train, c_train=c_train, x_std_train=x_std_train
    )
    return kept, data.x_train[valid]


def binarize(x: np.ndarray, seed: int) -> np.ndarray:
    """One Bernoulli sample of every pixel, with probability its grey value in [0, 1]."""
    return (np.random.default_rng(seed).random(x.shape, dtype=np.float32) < x).astype(np.float32)
