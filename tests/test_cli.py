"""The command line end to end, as a user runs it."""

import contextlib
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import content_md5, make_idx_folder, run_main


def jaxvae(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "jaxvae.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.slow
def test_train_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = jaxvae("train", "--out", str(out), "--epochs", "2", "--hidden", "32", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "test ELBO" in result.stdout and str(out) in result.stdout
    assert json.loads((out / "config.json").read_text())["model"]["hidden"] == [32]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    again = jaxvae("train", "--out", str(out), "--epochs", "1", "--quiet")
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = jaxvae("train", "--out", str(out), "--resume", "--epochs", "3", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_a_named_dataset_read_beside_jax_imports_trains_as_its_folder_does(tmp_path):
    """`--dataset mnist` is read while JAX imports on a thread; the same IDX files given as a folder are
    read before the imports. Same data, same seed: the same metrics, and nothing on stderr. The child takes
    the files made here for MNIST's published ones (`download.CONTENT_MD5`)."""
    make_idx_folder(tmp_path / "data" / "mnist", n_train=40, n_test=10, size=6)
    common = ["--epochs", "2", "--batch-size", "8", "--hidden", "16", "--quiet"]
    publish = "import json, sys; from jaxvae import download; download.CONTENT_MD5['mnist'] = json.loads(sys.argv[1])"
    named = subprocess.run(
        [sys.executable, "-c", f"{publish}; from jaxvae.cli import run; run(sys.argv[2:])"]
        + [json.dumps(content_md5(tmp_path / "data" / "mnist")), "train", "--dataset", "mnist"]
        + ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "a"), *common],
        capture_output=True,
        text=True,
        timeout=300,
    )
    folder = jaxvae("train", "--dataset", str(tmp_path / "data" / "mnist"), "--out", str(tmp_path / "b"), *common)
    assert named.returncode == 0 and named.stderr == "", named.stderr
    assert folder.returncode == 0, folder.stderr
    metrics = [[json.loads(line) for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()] for r in "ab"]
    drop = ("seconds", "examples_per_second")
    assert [{k: v for k, v in m.items() if k not in drop} for m in metrics[0]] == [
        {k: v for k, v in m.items() if k not in drop} for m in metrics[1]
    ]


@pytest.mark.slow
def test_bad_input_exits_2_with_one_line_and_no_run_folder(tmp_path):
    cases = [
        ["--dataset", "no-such-dataset"],
        ["--dataset", str(tmp_path / "missing.npz")],
        ["--hidden", "12,x"],
        ["--latent-dim", "0"],
        ["--likelihood", "poisson"],
    ]
    for extra in cases:
        out = tmp_path / "never"
        result = jaxvae("train", "--out", str(out), "--quiet", *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert not out.exists()


BAD_OPTIONS = [
    ["--epochs", "0"],
    ["--epochs", "-3"],
    ["--epochs", "2.5"],
    ["--batch-size", "0"],
    ["--lr", "0"],
    ["--lr", "-0.1"],
    ["--lr", "nan"],
    ["--lr", "inf"],
    ["--lr", "fast"],
    ["--samples", "0"],
    ["--latent-dim", "-2"],
    ["--seed", "-1"],
    ["--seed", "1.5"],
    ["--seed", str(2**32)],
    ["--hidden", ""],
    ["--hidden", "0"],
    ["--hidden", "64,-1"],
    ["--keep-checkpoints", "0"],
    ["--activation", "swish2"],
    ["--binarize", "sometimes"],
    ["--objective", "vlb"],
    ["--architecture", "transformer"],
    ["--no-such-option"],
    ["--resume", "--overwrite"],
    ["--resume"],  # --out is not a run folder
    ["--image-size", "16"],  # digits are not a folder of images to resize
    ["--data-dir", "."],  # digits are not looked for in a folder
    ["--gaussian-std", "2"],  # the likelihood is bernoulli
    ["--gaussian-variance", "fixed"],
    ["--inference", "bottom-up"],  # one latent layer
    ["--architecture", "gated", "--activation", "relu"],  # gated layers have their own
    ["--likelihood", "gaussian", "--gaussian-variance", "network", "--architecture", "conv"],
]


def test_every_bad_option_exits_2_with_one_line_and_no_run_folder(tmp_path, capsys):
    for extra in BAD_OPTIONS:
        out = tmp_path / "never"
        code, err = run_main(["train", "--out", str(out), "--quiet", *extra], capsys)
        assert code == 2, (extra, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (extra, err)
        assert not out.exists(), extra


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = run_main(["train", "--out", str(tmp_path / "f"), "--quiet"], capsys)
    assert code == 2 and "is a file" in err


@pytest.mark.slow
def test_resume_refuses_options_it_cannot_change(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("jaxvae.plots.write_figures", lambda *args: None)  # not under test here
    out = tmp_path / "run"
    assert run_main(["train", "--out", str(out), "--epochs", "1", "--hidden", "8", "--quiet"], capsys)[0] == 0
    code, err = run_main(["train", "--out", str(out), "--resume", "--lr", "0.1", "--hidden", "16", "--quiet"], capsys)
    assert code == 2 and "--hidden, --lr cannot change when resuming" in err, err
    code, err = run_main(["train", "--out", str(out), "--resume", "--epochs", "0", "--quiet"], capsys)
    assert code == 2 and "--epochs must be at least 1" in err, err
    assert run_main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"], capsys)[0] == 0
    code, err = run_main(["train", "--out", str(out), "--resume", "--epochs", "1", "--quiet"], capsys)
    assert code == 2 and "trained 2 epochs already" in err, err
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 2


def test_broken_config_json_is_reported(tmp_path, capsys):
    """A hand-edited config.json with a wrong type, a missing field or bad JSON: exit 2 on resume."""
    out = tmp_path / "run"
    out.mkdir()
    base = {"model": {"data_shape": [8, 8], "hidden": [8]}, "train": {"epochs": 2}}
    for broken in (
        {**base, "train": {"epochs": "ten"}},
        {**base, "train": {"seed": 1.5}},
        {**base, "model": {"data_shape": [8, 8], "hidden": ["wide"]}},
        {"train": {}},
        "[1, 2",
    ):
        (out / "config.json").write_text(broken if isinstance(broken, str) else json.dumps(broken))
        code, err = run_main(["train", "--out", str(out), "--resume", "--quiet"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "config" in err, (broken, err)


OBJECTIVES = {"elbo": ["--beta", "0.5", "--free-bits", "0.1"], "iwae": []}
ARCHITECTURES = {"mlp": ["--hidden", "8"], "conv": ["--hidden", "2,4"]}


LIKELIHOODS = ["bernoulli", "continuous-bernoulli", "gaussian"]
# the 12 cases below also run through every pair of posterior and prior, three pairs twice
PAIRS = [(q, p) for q in ("diagonal", "full", "iaf:2") for p in ("normal", "mixture:3", "vamp:5")] * 2


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_every_likelihood_architecture_objective_posterior_and_prior_trains(
    tmp_path, likelihood, architecture, objective
):
    """One epoch on digits through `jaxvae train` (in-process, to stay fast), with figures."""
    from jaxvae.cli import main

    case = (LIKELIHOODS.index(likelihood) * len(ARCHITECTURES) + list(ARCHITECTURES).index(architecture)) * 2
    posterior, prior = PAIRS[case + list(OBJECTIVES).index(objective)]
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--epochs", "1", "--latent-dim", "2", "--samples", "2", "--quiet"]
    options = ["--likelihood", likelihood, "--architecture", architecture, "--objective", objective]
    options += ["--posterior", posterior, "--prior", prior]
    assert main([*args, *options, *ARCHITECTURES[architecture], *OBJECTIVES[objective]]) == 0
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(record["test_elbo"]) and np.isfinite(record["train_elbo"])
    assert ("train_iwae_bound" in record) == (objective == "iwae")
    closed_form = posterior in ("diagonal", "full") and prior == "normal"
    assert record["kl_estimator"] == ("closed form" if closed_form else "monte carlo")
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"reconstructions.png", "samples.png", "latent_manifold.png"} <= figures


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--objective", "iwae", "--beta", "0.5"], "use them with --objective elbo"),
        (["--free-bits", "-1"], "--free-bits must be at least 0"),
        (["--likelihood", "gaussian", "--gaussian-std", "0"], "--gaussian-std must be positive"),
        (["--architecture", "conv", "--dataset", "VECTORS"], "conv needs images"),
        (["--dataset", "VECTORS", "--image-size", "5"], "--image-size resizes the images of a folder"),
        (["--posterior", "cholesky"], "--posterior must be one of diagonal, full, iaf:T"),
        (["--posterior", "iaf"], "--posterior must be one of"),
        (["--posterior", "iaf:0"], "iaf:N needs a positive integer"),
        (["--prior", "vamp"], "--prior must be one of normal, mixture:K, vamp:K"),
        (["--prior", "mixture:x"], "mixture:N needs a positive integer"),
        (["--prior", "normal:3"], "--prior must be one of"),
    ],
)
def test_bad_family_options_exit_2_with_one_line(tmp_path, capsys, extra, message):
    from jaxvae.cli import main

    np.save(tmp_path / "vectors.npy", np.random.default_rng(0).random((20, 5)))
    extra = [str(tmp_path / "vectors.npy") if e == "VECTORS" else e for e in extra]
    assert main(["train", "--out", str(tmp_path / "never"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
@pytest.mark.parametrize("posterior, prior", [("full", "mixture:3"), ("iaf:2", "vamp:5")])
def test_every_command_works_for_a_posterior_and_prior(tmp_path, capsys, posterior, prior):
    """train, resume, evaluate (with quadrature), sample, encode, plot and the explorer's model, in-process."""
    from jaxvae.cli import main
    from jaxvae.explore import Explorer

    out, files = str(tmp_path / "run"), tmp_path
    options = ["--hidden", "16", "--posterior", posterior, "--prior", prior]
    assert run_main(["train", "--out", out, "--quiet", "--epochs", "1", *options], capsys)[0] == 0
    assert run_main(["train", "--out", out, "--quiet", "--epochs", "2", "--resume"], capsys)[0] == 0
    capsys.readouterr()
    assert main(["evaluate", out, "--n", "10", "--iw-samples", "50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["elbo"] < report["log_likelihood"] <= report["log_likelihood_quadrature"] + 0.5
    assert (None in report["kl_per_dim"]) == posterior.startswith("iaf")  # a flow's marginals have no density
    assert main(["evaluate", out, "--n", "10", "--iw-samples", "50"]) == 0
    assert "KL per latent dimension" in capsys.readouterr().out
    for command in (["sample", out, "-o", str(files / "s.png")], ["encode", out, "-o", str(files / "z.npz")]):
        assert run_main(command, capsys)[0] == 0
    assert np.load(files / "z.npz")["mean"].shape == (359, 2)  # the test split of digits
    assert run_main(["plot", out], capsys)[0] == 0
    model = json.loads(Explorer(out).model_json)
    assert model["decoder"] is not None and len(model["points"]["mean"]) == 359


@pytest.mark.slow
def test_dreg_training_and_the_gradient_snr_report(tmp_path, capsys):
    """IWAE with DReG trains and records its bound; `evaluate --gradient-snr` gives the SNR by estimator and K
    in --json (`gradient_snr`), a table and a figure; on a sweep, or with K = 0, it exits 2 with one line."""
    from jaxvae.cli import main

    out = tmp_path / "run"
    common = ["--epochs", "1", "--hidden", "16", "--quiet"]
    code, err = run_main(
        ["train", "--out", str(out), "--objective", "iwae", "--samples", "3", "--gradient", "dreg", *common], capsys
    )
    assert code == 0, err
    assert "train_iwae_bound" in json.loads((out / "metrics.jsonl").read_text())
    evaluate = ["evaluate", str(out), "--iw-samples", "10", "--n", "64"]
    assert main([*evaluate, "--gradient-snr", "1,4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    snr = report["gradient_snr"]
    assert set(snr) == {"reparam", "stl", "dreg"} and all(set(by_k) == {"1", "4"} for by_k in snr.values())
    for by_k in snr.values():
        for s in by_k.values():
            assert all(s[side] > 0 and s[side + "_se"] > 0 for side in ("encoder", "decoder"))
    assert report["gradient_snr_batch"] == 32 and (out / "figures" / "gradient_snr.png").is_file()
    # the decoder's gradient is the same for every estimator: the same numbers on the same draws
    assert snr["reparam"]["4"]["decoder"] == pytest.approx(snr["dreg"]["4"]["decoder"], rel=1e-4)
    assert main([*evaluate, "--gradient-snr", "1", "--quiet"]) == 0  # the table: one K is enough
    text = capsys.readouterr().out
    assert "gradient signal-to-noise ratio" in text and "dreg" in text
    code, err = run_main(["evaluate", str(out), "--gradient-snr", "0,4"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    sweep = tmp_path / "sweep"
    assert run_main(["train", "--out", str(sweep), "--seeds", "2", *common], capsys)[0] == 0
    code, err = run_main(["evaluate", str(sweep), "--gradient-snr", "1"], capsys)
    assert code == 2 and "--gradient-snr" in err


def test_version_and_the_defaults_in_help():
    """`jaxvae --version` names the installed version; train's help gives every numeric default it uses."""
    import re

    import jaxvae as package

    done = jaxvae("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"jaxvae {package.__version__}", done.stderr
    page = " ".join(jaxvae("train", "--help").stdout.split())  # argparse wraps lines
    for option, default in (("--latent-dim", "2"), ("--batch-size", "32"), ("--seed", "0"), ("--lr", "1e-3")):
        assert re.search(rf"{option} [A-Z_]+ (?:(?! --).)*\(default {re.escape(default)}\)", page), option
    assert "--quiet no progress bars" in page


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A run trained on an image folder with the classes ant and bee (4x4 greyscale images)."""
    from PIL import Image

    from jaxvae.cli import main

    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for name in ("ant", "bee"):
        (root / "imgs" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(root / "imgs" / name / f"{i}.png")
    args = ["train", "--dataset", str(root / "imgs"), "--out", str(root / "run"), "--epochs", "1", "--quiet"]
    assert main([*args, "--hidden", "8"]) == 0
    return root / "run"


def test_evaluate_json_records_the_dataset_and_split_and_the_table_states_the_quadrature_check(folder_run, capsys):
    from jaxvae.cli import main

    capsys.readouterr()
    assert main(["evaluate", str(folder_run), "--iw-samples", "10", "--split", "train", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["dataset"] == str(folder_run.parent / "imgs") and got["split"] == "train"
    assert got["quadrature_checked"] == got["n"] == 16 and got["quadrature_change"] >= 0
    assert main(["evaluate", str(folder_run), "--iw-samples", "10"]) == 0
    out = capsys.readouterr().out
    assert "converged to 0.01" not in out
    assert re.search(r"largest change on grids twice as fine \(first 4\) +\d+\.\d{3}", out), out


def test_an_image_folder_s_class_names_are_recorded_and_encoded(folder_run, tmp_path, capsys):
    assert json.loads((folder_run / "config.json").read_text())["train"]["classes"] == ["ant", "bee"]
    code, _ = run_main(["encode", str(folder_run), "--split", "all", "-o", str(tmp_path / "z.npz")], capsys)
    assert code == 0
    with np.load(tmp_path / "z.npz") as f:
        assert f["classes"].tolist() == ["ant", "bee"] and sorted(set(f["y"].tolist())) == [0, 1]


def test_encode_names_what_the_split_all_holds(folder_run, tmp_path):
    from jaxvae.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["encode", str(folder_run), "--split", "all", "-o", str(tmp_path / "z.npz")]) == 0
    assert "posterior mean and std of 20 examples (training, then test), shape (20, 2)" in out.getvalue()
    assert "all examples" not in out.getvalue()


def trained(run_dir) -> list[str]:
    """The names in a run folder."""
    return sorted(p.name for p in run_dir.iterdir())


@pytest.mark.slow
def test_an_existing_empty_out_is_used_as_it_is_never_removed(tmp_path, capsys, monkeypatch):
    """A mount point cannot be removed (EBUSY): training into one, and --overwrite of the run it then holds,
    keep the folder and replace what is in it."""
    import errno
    import os

    monkeypatch.setattr("jaxvae.plots.write_figures", lambda *args: [])  # not under test here
    out = tmp_path / "mount"
    out.mkdir()
    rmdir = os.rmdir

    def mount_point_rmdir(path, *args, **kwargs):
        if os.path.abspath(path) == str(out):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        return rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", mount_point_rmdir)
    train = ["train", "--out", str(out), "--epochs", "1", "--hidden", "4", "--quiet"]
    assert run_main(train, capsys) == (0, "")
    assert trained(out) == ["checkpoints", "config.json", "metrics.jsonl"]
    assert run_main([*train, "--overwrite", "--seed", "3"], capsys) == (0, "")
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 3
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_a_write_that_fails_is_one_line_and_exit_2_in_every_command(folder_run, tmp_path, capsys, monkeypatch):
    """A full disk (ENOSPC, raised by the checkpoint's write in epoch 2) and a path that cannot be written (a
    folder where a file goes; tests run as root, whom a read-only mode does not stop): one line, exit 2,
    and nothing half-written."""
    import errno
    import os
    import shutil

    from jaxvae import checkpoint

    def one_line(code_err, *fragments):
        code, err = code_err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert all(f in err for f in fragments), err

    run = tmp_path / "run"
    shutil.copytree(folder_run, run)
    (tmp_path / "z.npz").mkdir()
    one_line(run_main(["encode", str(run), "-o", str(tmp_path / "z.npz")], capsys), f"cannot write {tmp_path}/z.npz")
    (tmp_path / "s.png").mkdir()
    one_line(run_main(["sample", str(run), "-o", str(tmp_path / "s.png")], capsys), f"cannot write {tmp_path}/s.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "s.png", "z.npz"]  # no temporary file left
    shutil.rmtree(run / "figures")
    (run / "figures").write_text("")
    one_line(run_main(["plot", str(run)], capsys), "figures")

    save = checkpoint.save

    def full_disk_in_epoch_2(path, state):
        if "epoch-00002" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return save(path, state)

    monkeypatch.setattr(checkpoint, "save", full_disk_in_epoch_2)
    out = tmp_path / "full"
    train = ["train", "--out", str(out), "--epochs", "2", "--hidden", "4", "--quiet"]
    one_line(run_main(train, capsys), "No space left on device")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-00001.eqx"]  # resumable from epoch 1


@pytest.mark.slow
def test_a_batch_larger_than_the_data_and_a_warm_up_longer_than_training_are_said_once(tmp_path, capsys):
    from jaxvae.cli import main

    argv = ["train", "--out", str(tmp_path / "run"), "--epochs", "2", "--hidden", "4", "--batch-size", "5000"]
    assert main([*argv, "--kl-warmup-epochs", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    notes = [
        # digits: 1,797 examples, 359 (20%) held out for testing
        "note: --batch-size 5000 is more than the 1438 training examples: each epoch is one step on all of them",
        # the weight rises by 1/4 an epoch from 0 in epoch 1: 1/4 in epoch 2
        "note: --kl-warmup-epochs 4 outlasts the 2 epochs: the KL weight ends at 0.25 of --beta",
    ]
    assert [out.count(note) for note in notes] == [1, 1], out
