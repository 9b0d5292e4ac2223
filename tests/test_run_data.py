"""A run's data read back as it was trained (`runs.load_data`), by every command that needs it."""

import json

import numpy as np
import pytest

from conftest import make_idx_folder
from jaxvae import download
from jaxvae.cli import main
from jaxvae.data import load_dataset
from test_data import save_image

pytestmark = pytest.mark.slow


def command(capsys, *argv) -> tuple[int, str]:
    """`jaxvae ARGV` in this process: (exit code, stdout); stderr must stay empty on success."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code != 0 or err == "", err
    return code, out


def test_a_run_of_resized_images_is_evaluated_encoded_plotted_and_explored_at_its_size(tmp_path, capsys):
    """Images of mixed sizes train only with --image-size; every command reads them at the run's size."""
    from jaxvae.explore import Explorer
    from jaxvae.train import load

    rng = np.random.default_rng(0)
    for i in range(10):
        size = (6, 6) if i % 2 else (8, 4)
        save_image(tmp_path / "images" / f"{i}.png", rng.integers(0, 256, size))
    run = tmp_path / "run"
    train = ["train", "--dataset", tmp_path / "images", "--image-size", "4,5", "--out", run, "--hidden", "8"]
    assert command(capsys, *train, "--epochs", "1", "--batch-size", "4", "--quiet")[0] == 0
    expected = load_dataset(str(tmp_path / "images"), image_size=(4, 5)).x_test  # the independent read
    code, out = command(capsys, "evaluate", run, "--iw-samples", "3", "--json", "--quiet")
    assert code == 0 and json.loads(out)["n"] == len(expected)
    assert command(capsys, "encode", run, "-o", tmp_path / "z.npz")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "z.npz")["mean"], load(run).encode(expected).mean, atol=1e-6)
    assert command(capsys, "plot", run)[0] == 0
    points = json.loads(Explorer(run).model_json)["points"]
    np.testing.assert_allclose(points["mean"], load(run).encode(expected).mean, atol=1e-6)


def test_a_data_dir_run_is_used_offline_with_an_empty_cache_and_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    """The run records its --data-dir as an absolute path, so its commands find the data from any folder
    with no download (the only mirror is a closed loopback port); --data-dir points them elsewhere."""
    from jaxvae.explore import Explorer

    monkeypatch.setenv(download.MIRRORS_VARIABLE, "http://127.0.0.1:9/")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    make_idx_folder(tmp_path / "data" / "mnist", n_train=16, n_test=6, size=4)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    train = ["train", "--dataset", "mnist", "--data-dir", "data", "--out", run, "--hidden", "8", "--quiet"]
    assert command(capsys, *train, "--epochs", "1", "--batch-size", "4")[0] == 0
    assert json.loads((run / "config.json").read_text())["train"]["data_dir"] == str((tmp_path / "data").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out = command(capsys, "evaluate", run, "--iw-samples", "3", "--json", "--quiet")
    assert code == 0 and json.loads(out)["n"] == 6
    assert command(capsys, "encode", run, "-o", tmp_path / "z.npz", "--split", "all")[0] == 0
    assert command(capsys, "plot", run)[0] == 0
    assert len(json.loads(Explorer(run).model_json)["points"]["mean"]) == 6
    assert list((tmp_path / "cache").iterdir()) == []  # nothing downloaded, nothing left behind
    (tmp_path / "data").rename(tmp_path / "moved")
    assert command(capsys, "evaluate", run, "--iw-samples", "3", "--data-dir", tmp_path / "moved", "--quiet")[0] == 0
    assert (
        command(capsys, "train", "--resume", "--out", run, "--epochs", "2", "--data-dir", "../moved", "--quiet")[0] == 0
    )
    assert json.loads((run / "config.json").read_text())["train"]["data_dir"] == str((tmp_path / "moved").resolve())
    assert command(capsys, "plot", run)[0] == 0  # from the folder the resume recorded
    assert list((tmp_path / "cache").iterdir()) == []
