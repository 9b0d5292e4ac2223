"""A run's data read back as it was trained (`run_data.load_data`), by every command that needs it."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import content_md5, make_idx_folder
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
    assert command(capsys, "plot", run, "--quiet")[0] == 0
    points = json.loads(Explorer(run).model_json)["points"]
    np.testing.assert_allclose(points["mean"], load(run).encode(expected).mean, atol=1e-6)


def test_a_data_dir_run_is_used_offline_with_an_empty_cache_and_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    """The run records its --data-dir as an absolute path, so its commands find the data from any folder
    with no download (the only mirror is a closed loopback port); --data-dir points them elsewhere. The
    commands keep their compiled programs where this test process does (not in the empty cache folder)."""
    import jax

    from jaxvae import process
    from jaxvae.explore import Explorer

    keep_programs, programs = process.enable_compilation_cache, Path(jax.config.jax_compilation_cache_dir)
    monkeypatch.setattr(process, "enable_compilation_cache", lambda: keep_programs(programs))
    monkeypatch.setenv(download.MIRRORS_VARIABLE, "http://127.0.0.1:9/")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    make_idx_folder(tmp_path / "data" / "mnist", n_train=16, n_test=6, size=4)
    monkeypatch.setitem(download.CONTENT_MD5, "mnist", content_md5(tmp_path / "data" / "mnist"))
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
    assert command(capsys, "plot", run, "--quiet")[0] == 0
    assert len(json.loads(Explorer(run).model_json)["points"]["mean"]) == 6
    assert downloaded(tmp_path / "cache") == []  # nothing downloaded, nothing left behind
    (tmp_path / "data").rename(tmp_path / "moved")
    assert command(capsys, "evaluate", run, "--iw-samples", "3", "--data-dir", tmp_path / "moved", "--quiet")[0] == 0
    assert (
        command(capsys, "train", "--resume", "--out", run, "--epochs", "2", "--data-dir", "../moved", "--quiet")[0] == 0
    )
    assert json.loads((run / "config.json").read_text())["train"]["data_dir"] == str((tmp_path / "moved").resolve())
    assert command(capsys, "plot", run, "--quiet")[0] == 0  # from the folder the resume recorded
    assert downloaded(tmp_path / "cache") == []


def downloaded(cache: Path) -> list[Path]:
    """The files in the cache folder `cache` but for matplotlib's font list, which a process that imports
    matplotlib first keeps there."""
    return [p for p in cache.rglob("*") if p.is_file() and not p.is_relative_to(cache / "matplotlib")]


def test_a_relative_dataset_path_is_recorded_absolute_and_every_command_takes_the_data_s_new_place(
    tmp_path, capsys, monkeypatch
):
    """A run of `--dataset ok.npy` typed in one folder is used from another; once the file has moved, every
    command that reads it takes `--dataset` with its new place, a resume included (it checks the data's shape,
    not the path's string); a resume cannot change a named dataset."""
    from jaxvae.explore import Explorer
    from jaxvae.train import load

    tmp_path = tmp_path.resolve()
    rng = np.random.default_rng(0)
    (tmp_path / "work").mkdir()
    np.save(tmp_path / "work" / "ok.npy", rng.random((30, 4, 4), dtype=np.float32))
    monkeypatch.chdir(tmp_path / "work")
    run = tmp_path / "run"
    train = ["train", "--out", run, "--hidden", "8", "--batch-size", "4", "--quiet"]
    assert command(capsys, *train, "--dataset", "ok.npy", "--epochs", "1")[0] == 0
    assert json.loads((run / "config.json").read_text())["train"]["dataset"] == f"{tmp_path}/work/ok.npy"
    monkeypatch.chdir(tmp_path)
    assert command(capsys, "plot", run, "--quiet")[0] == 0
    (tmp_path / "work" / "ok.npy").rename(tmp_path / "moved.npy")
    assert main(["plot", str(run), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"jaxvae: error: the run's data are no longer at {tmp_path}/work/ok.npy: "
        "pass --dataset with where they are now\n"
    )
    expected = load_dataset(tmp_path / "moved.npy").x_test  # the independent read
    code, out = command(capsys, "evaluate", run, "--dataset", "moved.npy", "--iw-samples", "3", "--json", "--quiet")
    assert code == 0 and json.loads(out)["n"] == len(expected)
    assert command(capsys, "encode", run, "--dataset", "moved.npy", "-o", "z.npz")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "z.npz")["mean"], load(run).encode(expected).mean, atol=1e-6)
    assert command(capsys, "plot", run, "--dataset", "moved.npy", "--quiet")[0] == 0
    points = json.loads(Explorer(run, dataset="moved.npy").model_json)["points"]
    np.testing.assert_allclose(points["mean"], load(run).encode(expected).mean, atol=1e-6)
    resume = ["train", "--out", run, "--resume", "--quiet", "--epochs"]
    assert command(capsys, *resume, "2", "--dataset", "moved.npy")[0] == 0
    assert json.loads((run / "config.json").read_text())["train"]["dataset"] == f"{tmp_path}/moved.npy"
    np.save(tmp_path / "wide.npy", rng.random((30, 2, 8), dtype=np.float32))  # as many values, other shape
    assert main([str(a) for a in (*resume, "3", "--dataset", "wide.npy")]) == 2
    assert "has examples of shape (2, 8), the run trained on (4, 4)" in capsys.readouterr().err
    assert main([str(a) for a in (*resume, "3", "--dataset", "digits")]) == 2
    assert "--dataset cannot change when resuming" in capsys.readouterr().err
    for argv in ([*resume, "3"], ["encode", run, "-o", "z.npz"]):  # --data-dir is for mnist and fashion-mnist
        assert main([str(a) for a in (*argv, "--data-dir", tmp_path)]) == 2
        assert (
            f"--data-dir is where mnist and fashion-mnist are found, not {tmp_path}/moved.npy"
            in capsys.readouterr().err
        )
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_fit_records_the_data_it_was_given(tmp_path, capsys):
    """The Python API's run names the file its data came from (paths as str or Path), so every command reads
    them; arrays made in Python are named by no file, and the commands ask for --dataset."""
    from jaxvae.config import ModelConfig, RunConfig, TrainConfig
    from jaxvae.data import Dataset
    from jaxvae.runs import read_metrics
    from jaxvae.train import fit

    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.random((40, 3, 5), dtype=np.float32))
    data = load_dataset(tmp_path / "x.npy")
    config = RunConfig(ModelConfig(data_shape=(3, 5), hidden=(8,)), TrainConfig(epochs=1, batch_size=8))
    fit(config, data, str(tmp_path / "run"), progress=False)
    assert [r["epoch"] for r in read_metrics(str(tmp_path / "run"))] == [1]  # a path as str or Path
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["train"]["dataset"] == str(tmp_path.resolve() / "x.npy")
    assert recorded["model"]["data_shape"] == [3, 5]
    code, out = command(capsys, "evaluate", tmp_path / "run", "--iw-samples", "3", "--json", "--quiet")
    assert code == 0 and json.loads(out)["n"] == len(data.x_test) == 8
    arrays = Dataset(data.x_train, None, data.x_test, None, (3, 5))
    fit(config, arrays, tmp_path / "arrays", progress=False)
    assert main(["evaluate", str(tmp_path / "arrays")]) == 2
    assert "trained on arrays given in Python" in capsys.readouterr().err
    evaluate = ["evaluate", tmp_path / "arrays", "--dataset", tmp_path / "x.npy", "--iw-samples", "3", "--quiet"]
    assert command(capsys, *evaluate)[0] == 0
