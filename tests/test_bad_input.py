"""A catalog of bad input, each run through the real `jaxvae train` in a subprocess.

Every case must exit with code 2, print one line on stderr without a traceback, and leave no run
folder behind (or, for a resumed run, leave it as it was). Each case builds its input in tmp_path.
"""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_idx_folder, write_idx
from jaxvae.config import ModelConfig, RunConfig, TrainConfig

pytestmark = pytest.mark.slow


def idx_folder(tmp_path, damage=None):
    folder = tmp_path / "idx"
    make_idx_folder(folder)
    if damage:
        damage(folder / "train-images-idx3-ubyte.gz")
    return ["--dataset", str(folder)]


def corrupt_gzip(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 :] = bytes(255 - b for b in raw[len(raw) // 2 :])
    path.write_bytes(bytes(raw))


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def truncated_idx(path):
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-7]))


def wrong_magic(path):
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2] = 0x42
    path.write_bytes(gzip.compress(bytes(raw)))


def fewer_labels(tmp_path):
    make_idx_folder(tmp_path / "idx")
    write_idx(tmp_path / "idx" / "train-labels-idx1-ubyte.gz", np.zeros(11))
    return ["--dataset", str(tmp_path / "idx")]


def array_file(name, **arrays):
    def build(tmp_path):
        path = tmp_path / name
        if name.endswith(".npz"):
            np.savez(path, **arrays)
        else:
            np.save(path, arrays["x"], allow_pickle=True)
        return ["--dataset", str(path)]

    return build


def images(*shapes, extra=None):
    def build(tmp_path):
        from PIL import Image

        folder = tmp_path / "images"
        folder.mkdir()
        for i, shape in enumerate(shapes):
            Image.fromarray(np.full(shape, 100, np.uint8)).save(folder / f"{i}.png")
        if extra:
            extra(folder)
        return ["--dataset", str(folder)]

    return build


def resume_on_other_shape(tmp_path):
    """A run of a model for 8x8 examples, resumed on data of 3x3 examples."""
    np.save(tmp_path / "small.npy", np.zeros((10, 3, 3), np.uint8))
    run = tmp_path / "run"
    run.mkdir()
    RunConfig(ModelConfig(data_shape=(8, 8)), TrainConfig(dataset=str(tmp_path / "small.npy"))).save(
        run / "config.json"
    )
    return ["--resume"]


CASES = {
    "missing file": lambda t: ["--dataset", str(t / "missing.npz")],
    "missing folder": lambda t: ["--dataset", str(t / "nowhere") + "/"],
    "unknown dataset name": lambda t: ["--dataset", "cifar-11"],
    "missing --data-dir": lambda t: ["--dataset", "mnist", "--data-dir", str(t / "nowhere")],
    "download fails": lambda t: ["--dataset", "mnist"],  # the only mirror is a closed loopback port
    "corrupt gzip": lambda t: idx_folder(t, corrupt_gzip),
    "truncated gzip": lambda t: idx_folder(t, truncate),
    "truncated IDX": lambda t: idx_folder(t, truncated_idx),
    "wrong magic number": lambda t: idx_folder(t, wrong_magic),
    "image and label counts differ": fewer_labels,
    "incomplete IDX folder": lambda t: idx_folder(t, lambda p: p.unlink()),
    "NaN": array_file("nan.npy", x=np.array([[0.5, np.nan]] * 4)),
    "infinity": array_file("inf.npz", x=np.array([[0.5, np.inf]] * 4)),
    "values outside [0, 1] for bernoulli": array_file("big.npy", x=np.full((10, 4), 3.0)),
    "empty data": array_file("empty.npy", x=np.zeros((0, 4))),
    "rank 1": array_file("flat.npy", x=np.zeros(10)),
    "npz without x": array_file("nox.npz", images=np.zeros((10, 4))),
    "pickled objects": array_file("objects.npy", x=np.array([{"a": 1}] * 4, dtype=object)),
    "labels disagree with examples": array_file("labels.npz", x=np.zeros((10, 4)), y=np.zeros(9, np.int64)),
    "non-integer labels": array_file("labels.npz", x=np.zeros((10, 4)), y=np.full(10, 0.5)),
    "unreadable image": images((4, 4), (4, 4), extra=lambda f: (f / "broken.png").write_bytes(b"\x89PNG garbage")),
    "truncated image": images(extra=lambda f: truncate_image(f)),
    "images of mixed sizes": images((4, 4), (5, 4)),
    "folder without images": images(extra=lambda f: (f / "notes.txt").write_text("hi")),
    "model on data of another shape": resume_on_other_shape,
    "early stopping without validation": lambda t: ["--early-stopping", "2", "--validation-fraction", "0"],
    "validation fraction of 1": lambda t: ["--validation-fraction", "1"],
    "bad --image-size": lambda t: ["--image-size", "0,3"],
    "free bits with STL": lambda t: ["--free-bits", "0.5", "--gradient", "stl"],
    "PIWAE with a VampPrior": lambda t: ["--objective", "piwae", "--groups", "2", "--prior", "vamp:3"],
    "CIWAE beta outside [0, 1]": lambda t: ["--objective", "ciwae", "--ciwae-beta", "2"],
}


def truncate_image(folder):
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), np.uint8)).save(folder / "whole.png")
    raw = (folder / "whole.png").read_bytes()
    (folder / "cut.png").write_bytes(raw[: len(raw) - 20])


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    extra = CASES[case](tmp_path)
    run = tmp_path / "run"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "JAXVAE_MIRRORS": "http://127.0.0.1:9/"}
    result = subprocess.run(
        [sys.executable, "-m", "jaxvae.cli", "train", "--out", str(run), "--epochs", "1", "--quiet", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxvae") and "Traceback" not in result.stderr, result.stderr
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.relative_to(tmp_path).parts[0] != "cache")
    assert after == [p for p in before if p.parts[0] != "cache"]  # no run folder; a resumed one unchanged
    downloads = [tmp_path / "cache" / "jaxvae" / name for name in ("mnist", "fashion-mnist")]  # not xla/, compiled
    assert not any(p.is_file() for folder in downloads for p in folder.rglob("*"))  # no partial download


def options_of(command: str) -> set[str]:
    """Every option string of `jaxvae COMMAND` (--dataset, -o, ...), from the parser itself."""
    from jaxvae.cli.parser import build_parser

    (commands,) = [a for a in build_parser()._actions if a.dest == "command"]
    return {o for action in commands.choices[command]._actions for o in action.option_strings}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from jaxvae.cli import main

    run = tmp_path_factory.mktemp("hints") / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", "--hidden", "8", "--quiet"]) == 0
    return run


EVALUATION_CASES = {  # data a trained run's commands are given: name -> (build the --dataset, words of its hint)
    "images of mixed sizes": (images((8, 8), (5, 4)), "resize them"),
    "values outside [0, 1] for the run's bernoulli": (array_file("f255.npz", x=np.full((10, 8, 8), 255.0)), "rescale"),
    "download fails": (lambda t: ["--dataset", "mnist"], "put the files in --data-dir"),  # a closed loopback port
}


@pytest.mark.parametrize("command", ["evaluate", "encode"])
@pytest.mark.parametrize("case", list(EVALUATION_CASES))
def test_a_hint_names_only_what_the_command_it_came_from_can_do(
    digits_run, tmp_path, capsys, monkeypatch, command, case
):
    """Exit 2 with one line whose every option is one of the command's own (evaluate has no --image-size or
    --likelihood), and which says what to do."""
    import re

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("JAXVAE_MIRRORS", "http://127.0.0.1:9/")

    from jaxvae.cli import main

    build, advice = EVALUATION_CASES[case]
    args = [command, str(digits_run), *build(tmp_path)] + (
        ["-o", str(tmp_path / "z.npz")] if command == "encode" else []
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and advice in err, err
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", err))
    assert named <= options_of(command), (named - options_of(command), err)


def test_training_on_images_of_mixed_sizes_names_image_size(tmp_path, capsys):
    from jaxvae.cli import main

    assert main(["train", "--out", str(tmp_path / "run"), *images((8, 8), (5, 4))(tmp_path)]) == 2
    assert "pass --image-size H,W to resize them" in capsys.readouterr().err


def test_data_that_cannot_be_used_are_refused_before_jax_is_imported(tmp_path):
    """A file given to `train` is read before JAX's imports (`cli.startup.read_while_importing`): an .npz
    without `x` ends the command with exit 2 in a process that never imported jax."""
    np.savez(tmp_path / "bad.npz", y=np.zeros(3))
    code = (
        "import sys; from jaxvae.cli import main; "
        "code = main(['train', '--dataset', sys.argv[1], '--out', sys.argv[2], '--quiet']); "
        "print(code, 'jax' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "bad.npz"), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert not (tmp_path / "run").exists()
