"""Data loading: IDX round trips, splits, scaling, binarization and clear errors."""

import gzip
import struct

import numpy as np
import pytest

from jaxvae.data import binarize, load_dataset, read_idx
from jaxvae.errors import InputError


def write_idx(path, array: np.ndarray, compress=True):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_idx_folder(folder, n_train=12, n_test=5, size=4):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    images = {"train": rng.integers(0, 256, (n_train, size, size)), "t10k": rng.integers(0, 256, (n_test, size, size))}
    for part, x in images.items():
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", rng.integers(0, 10, len(x)))
    return images


def test_idx_folder_round_trip(tmp_path):
    images = make_idx_folder(tmp_path / "idx")
    data = load_dataset(str(tmp_path / "idx"))
    assert data.shape == (4, 4)
    np.testing.assert_allclose(data.x_train * 255, images["train"].reshape(12, 16), atol=1e-4)
    assert data.x_test.shape == (5, 16) and data.y_test.shape == (5,)


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x07\x03" + b"\x00" * 20)
    with pytest.raises(InputError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 4, 4) + b"\x00" * 5)
    with pytest.raises(InputError, match="promises"):
        read_idx(short)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(b"\x00" * 100)[:20])
    with pytest.raises(InputError, match="gzip"):
        read_idx(broken)


def test_idx_count_mismatch(tmp_path):
    make_idx_folder(tmp_path / "idx")
    write_idx(tmp_path / "idx" / "train-labels-idx1-ubyte.gz", np.zeros(11))
    with pytest.raises(InputError, match="12 train images but 11 labels"):
        load_dataset(str(tmp_path / "idx"))


def test_digits_is_real_and_split_is_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.shape == (8, 8) and len(a.x_train) + len(a.x_test) == 1797
    assert 0 <= a.x_train.min() and a.x_train.max() == 1.0
    np.testing.assert_array_equal(a.x_test, b.x_test)


def test_npz_and_npy(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(50))
    np.save(tmp_path / "d.npy", x)
    data = load_dataset(str(tmp_path / "d.npz"))
    assert data.shape == (3, 3) and len(data.x_test) == 10 and data.x_train.max() <= 1
    assert load_dataset(str(tmp_path / "d.npy")).y_train is None
    np.savez(tmp_path / "nan.npz", x=np.full((4, 2), np.nan))
    with pytest.raises(InputError, match="NaN"):
        load_dataset(str(tmp_path / "nan.npz"))


@pytest.mark.parametrize("name", ["no-such-dataset", "missing/file.npz", "missing.npy"])
def test_unknown_names_are_input_errors(name):
    with pytest.raises(InputError):
        load_dataset(name)


def test_binarize_is_seeded_and_has_the_right_mean():
    x = np.full((200, 500), 0.3, np.float32)
    a, b = binarize(x, 4), binarize(x, 4)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 1.0}
    assert abs(a.mean() - 0.3) < 5 * np.sqrt(0.21 / a.size)
