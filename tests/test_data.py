"""Data loading: IDX round trips, splits, scaling, binarization and clear errors."""

import gzip
import struct

import numpy as np
import pytest

from conftest import make_idx_folder, write_idx
from jaxvae.config import TrainConfig
from jaxvae.data import binarize, load_dataset, read_idx
from jaxvae.errors import ImageSizesDiffer, InputError


def test_idx_folder_round_trip(tmp_path):
    images = make_idx_folder(tmp_path / "idx")
    data = load_dataset(str(tmp_path / "idx"))
    assert data.shape == (4, 4)
    np.testing.assert_allclose(data.x_train * 255, images["train"].reshape(12, 16), atol=1e-4)
    assert data.x_test.shape == (5, 16) and data.y_test.shape == (5,)


def test_idx_images_are_used_in_place_by_the_cpu_device(tmp_path):
    """uint8 / 255 in float32, exactly (numpy's own division as the reference), in memory that
    jax.device_put on a CPU takes as it is (the same address: no copy of the training set)."""
    import jax

    images = make_idx_folder(tmp_path, n_train=7, size=5)
    data = load_dataset(str(tmp_path))
    np.testing.assert_array_equal(data.x_train, images["train"].reshape(7, 25).astype(np.float32) / 255.0)
    assert data.x_train.dtype == np.float32
    on_device = jax.device_put(data.x_train, jax.devices("cpu")[0])
    assert on_device.unsafe_buffer_pointer() == data.x_train.ctypes.data


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
        read_idx(str(broken))  # a path as str or Path


def test_idx_count_mismatch(tmp_path):
    make_idx_folder(tmp_path / "idx")
    write_idx(tmp_path / "idx" / "train-labels-idx1-ubyte.gz", np.zeros(11))
    with pytest.raises(InputError, match="12 train images but 11 labels"):
        load_dataset(str(tmp_path / "idx"))


def test_digits_is_real_and_split_is_fixed():
    """The digits are scikit-learn's `load_digits`, pixels / 16, split in a fixed order."""
    from sklearn.datasets import load_digits

    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.shape == (8, 8) and len(a.x_train) + len(a.x_test) == 1797
    assert 0 <= a.x_train.min() and a.x_train.max() == 1.0
    np.testing.assert_array_equal(a.x_test, b.x_test)
    pixels, labels = load_digits(return_X_y=True)
    ours = np.concatenate([a.x_train, a.x_test]).reshape(-1, 64) * 16
    order = np.lexsort(np.column_stack([ours, np.concatenate([a.y_train, a.y_test])]).T)
    theirs = np.lexsort(np.column_stack([pixels, labels]).T)
    np.testing.assert_array_equal(ours[order], pixels[theirs])
    np.testing.assert_array_equal(np.concatenate([a.y_train, a.y_test])[order], labels[theirs])


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


def save_image(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)


def test_image_folder_with_class_subfolders_gives_labels_by_sorted_name(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {name: rng.integers(0, 256, (3, 5, 6)) for name in ("cat", "ant", "bee")}
    for name, images in pixels.items():
        for i, image in enumerate(images):
            save_image(tmp_path / "imgs" / name / f"{i}.png", image)  # PNG is lossless: exact round trip
    data = load_dataset(str(tmp_path / "imgs"))
    assert data.shape == (5, 6) and data.classes == ("ant", "bee", "cat")
    x = np.concatenate([data.x_train, data.x_test]) * 255
    y = np.concatenate([data.y_train, data.y_test])
    for label, name in enumerate(["ant", "bee", "cat"]):
        expected = sorted(map(tuple, pixels[name].reshape(3, -1).astype(float)))
        np.testing.assert_allclose(sorted(map(tuple, x[y == label])), expected, atol=1e-3)


def test_image_folder_colour_resize_and_mixed_sizes(tmp_path):
    rng = np.random.default_rng(1)
    save_image(tmp_path / "a" / "grey.png", rng.integers(0, 256, (8, 8)))
    save_image(tmp_path / "a" / "colour.jpg", rng.integers(0, 256, (8, 8, 3)))
    save_image(tmp_path / "a" / "small.png", rng.integers(0, 256, (4, 6)))
    with pytest.raises(ImageSizesDiffer, match=r"images differ in size \(colour.jpg is 8x8, small.png is 4x6\)$"):
        load_dataset(str(tmp_path / "a"))
    data = load_dataset(str(tmp_path / "a"), image_size=(4, 2))
    assert data.shape == (4, 2, 3) and data.y_train is None  # one colour image makes all RGB
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1
    # a constant grey image stays that grey through resizing and RGB conversion
    save_image(tmp_path / "b" / "flat.png", np.full((6, 6), 51))
    save_image(tmp_path / "b" / "flat2.png", np.full((6, 6), 204))
    flat = load_dataset(str(tmp_path / "b"), image_size=(3, 3))
    np.testing.assert_allclose(sorted([flat.x_train.mean(), flat.x_test.mean()]), [0.2, 0.8], atol=1e-6)


def test_validation_split_is_fixed_disjoint_and_complete():
    from jaxvae.data import split_validation

    data = load_dataset("digits")
    rest, valid = split_validation(data, 0.1)
    again, valid_again = split_validation(data, 0.1)
    np.testing.assert_array_equal(valid, valid_again)
    assert len(valid) == round(0.1 * len(data.x_train)) and len(rest.x_train) + len(valid) == len(data.x_train)
    assert len(rest.y_train) == len(rest.x_train)
    together = np.concatenate([rest.x_train, valid])
    assert sorted(map(bytes, together)) == sorted(map(bytes, data.x_train))  # a partition of the training rows
    np.testing.assert_array_equal(rest.x_test, data.x_test)
    assert split_validation(data, 0)[0] is data and len(split_validation(data, 0)[1]) == 0


def test_each_binarize_option_binarizes_as_it_says():
    """threshold: x > 0.5; none: x; static: one Bernoulli(x) draw per pixel, fixed by the seed, for training
    and held-out sets alike; dynamic: the training array as it is, held-out sets drawn as static's, and a
    fresh draw at each step. A Bernoulli(p) mean over 20,000 pixels is within 5 standard errors of p."""
    import jax

    from jaxvae.builder import build_binarization

    def option(name):
        return build_binarization(TrainConfig(binarize=name))

    x = np.array([[0.0, 0.3, 0.5, 0.50001, 1.0]], np.float32)
    np.testing.assert_array_equal(option("threshold").training(x, 0), [[0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(option("none").training(x, 0), x)
    grey = np.full((200, 100), 0.3, np.float32)
    static, dynamic = option("static"), option("dynamic")
    for drawn in (static.training(grey, 3), static.held_out(grey, 3), dynamic.held_out(grey, 3)):
        assert set(np.unique(drawn)) == {0.0, 1.0} and abs(drawn.mean() - 0.3) < 5 * np.sqrt(0.21 / grey.size)
    np.testing.assert_array_equal(static.training(grey, 3), dynamic.held_out(grey, 3))
    assert not np.array_equal(static.training(grey, 3), static.training(grey, 4))
    np.testing.assert_array_equal(dynamic.training(grey, 3), grey)
    key = jax.random.PRNGKey(0)
    (key_1, step_1), (_, step_2) = dynamic.in_step(key, grey), dynamic.in_step(jax.random.PRNGKey(1), grey)
    assert abs(float(step_1.mean()) - 0.3) < 5 * np.sqrt(0.21 / grey.size) and not np.array_equal(step_1, step_2)
    assert not np.array_equal(key_1, key) and static.in_step(key, grey)[1] is grey
    assert (static.seeded, dynamic.seeded, option("none").binary) == (True, False, False)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((10, 3)), "y": np.zeros((10, 2), np.int64)}, "rank-1 integer"),
        ({"x": np.zeros((10, 3)), "y": np.zeros(10)}, "rank-1 integer"),
        ({"x": np.zeros((10, 3)), "y": np.zeros(9, np.int64)}, "10 examples but 9 labels"),
        ({"x": np.zeros((10, 0))}, "no data"),
        ({"x": np.array(["a", "b"])}, "rank >= 2"),
    ],
)
def test_npz_label_and_shape_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=message):
        load_dataset(str(tmp_path / "d.npz"))
