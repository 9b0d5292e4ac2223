"""`jaxvae train --labels N` (M2) through the command line: the run's records against recomputations from its
checkpoint and from `encode`, a bit-exact resume, `evaluate`'s bounds ordered as bounds are, and the refusals."""

import json
import statistics

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import evaluated_m2, run_main
from jaxvae.cli.sweep_summary import summary

TRAIN = ["train", "--dataset", "digits", "--labels", "50", "--hidden", "32", "--batch-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def m2_run(tmp_path_factory):
    """M2 on the digits, 50 labels (5 a class), trained 2 epochs through the command line."""
    from jaxvae.cli import main

    out = tmp_path_factory.mktemp("m2") / "run"
    assert main([*TRAIN, "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_the_run_records_its_labels_and_each_epochs_test_error(m2_run):
    """config.json records the labels and the label seed (--seed's by default); each epoch's test classification
    error is argmax q(y|x)'s on the test digits, recomputed here from the checkpoint; the labelled subset has 5
    examples of each class; the figures include the confusion matrix."""
    from jaxvae.data import load_dataset
    from jaxvae.labels import labelled_subset
    from jaxvae.semisupervised import SemiSupervisedVAE
    from jaxvae.train import load

    config = json.loads((m2_run / "config.json").read_text())
    assert config["train"]["labels"] == 50 and config["train"]["label_seed"] == config["train"]["seed"] == 0
    assert config["model"]["condition_dim"] == 10 and config["train"]["condition"] == ""
    records = [json.loads(line) for line in (m2_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    data = load_dataset("digits", progress=False)
    model = load(m2_run)
    assert isinstance(model, SemiSupervisedVAE)
    predicted = np.argmax(np.asarray(model.log_q_y(jnp.asarray(data.x_test, jnp.float32))), axis=1)
    assert records[-1]["test_classification_error"] == pytest.approx(np.mean(predicted != data.y_test), abs=1e-12)
    assert all(0 <= r["test_classification_error"] <= 1 and np.isfinite(r["test_elbo"]) for r in records)
    kept, _ = labelled_subset(data.y_train, 50, 10, config["train"]["label_seed"])
    assert np.array_equal(np.bincount(data.y_train[kept], minlength=10), np.full(10, 5))
    assert (m2_run / "figures" / "confusion.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_resumed_run_is_the_run_trained_at_once(m2_run, tmp_path, capsys):
    """1 epoch, then --resume to 2: the checkpoint of epoch 2 byte for byte that of the run trained 2 epochs at
    once, and the same metrics but the timings."""
    out = tmp_path / "resumed"
    resume = ["train", "--out", str(out), "--resume", "--epochs", "2"]
    for argv in ([*TRAIN, "--epochs", "1", "--out", str(out)], resume):
        code, err = run_main(argv, capsys)
        assert code == 0, err
    name = "checkpoints/epoch-00002.eqx"
    assert (out / name).read_bytes() == (m2_run / name).read_bytes()

    def untimed(run):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("seconds", "examples_per_second")} for r in records]

    assert untimed(out) == untimed(m2_run)


@pytest.mark.slow
def test_evaluate_scores_what_encode_writes_and_orders_the_bounds(m2_run, tmp_path, capsys):
    """`evaluate --json`: its classification error, per class and confusion matrix recomputed from `encode`'s
    q_y and the true labels; log p(x) by L_K per class (K = 200) at least U(x), and within 0.1 nats of the
    per-class quadrature (k = 2)."""
    result, q_y, y = evaluated_m2(m2_run, 120, 200, tmp_path, capsys)
    np.testing.assert_allclose(q_y.sum(axis=1), 1, rtol=1e-5)
    predicted = q_y.argmax(axis=1)
    assert result["classification_error"] == pytest.approx(np.mean(predicted != y), abs=1e-12)
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (y, predicted), 1)
    assert result["confusion_matrix"] == confusion.tolist()
    per_class = [np.mean(predicted[y == c] != c) for c in range(10)]
    np.testing.assert_allclose(result["classification_error_per_class"], per_class, atol=1e-12)
    assert result["log_likelihood"] >= result["unlabelled_bound"]
    assert abs(result["log_likelihood"] - result["log_likelihood_quadrature"]) < 0.1


@pytest.mark.slow
def test_an_m2_sweep_s_members_are_the_runs_of_their_seeds(m2_run, tmp_path, capsys):
    """--seeds 2: each member draws its labels by its own seed (recorded), member seed-0 is the run of seed 0
    byte for byte, and `evaluate` of the sweep gives each member's classification error and their mean."""
    from jaxvae.cli import main

    out = tmp_path / "seeds"
    code, err = run_main([*TRAIN, "--epochs", "2", "--seeds", "2", "--out", str(out)], capsys)
    assert code == 0, err
    seeds = [json.loads((out / f"seed-{s}" / "config.json").read_text())["train"]["label_seed"] for s in (0, 1)]
    assert seeds == [0, 1]
    name = "checkpoints/epoch-00002.eqx"
    assert (out / "seed-0" / name).read_bytes() == (m2_run / name).read_bytes()
    assert main(["evaluate", str(out), "--json", "--iw-samples", "10", "--n", "60", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    errors = [result["members"][f"seed-{s}"]["classification_error"] for s in (0, 1)]
    assert result["groups"]["seeds"]["mean"]["classification_error"] == pytest.approx(np.mean(errors))


@pytest.mark.slow
def test_a_kl_warm_up_of_m2_records_its_weights(m2_run, tmp_path, capsys):
    """--kl-warmup-epochs 2 over 2 epochs: metrics.jsonl's beta is 0 then 0.5 (`objectives.kl_weight`), as an
    unlabelled run's; the first epoch trains without the KL of z, so its loss is another than the run's without
    the warm-up, with the same seed, labels and data."""
    out = tmp_path / "warm"
    code, err = run_main([*TRAIN, "--epochs", "2", "--kl-warmup-epochs", "2", "--out", str(out)], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    plain = [json.loads(line) for line in (m2_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["beta"] for r in records] == [0.0, 0.5] and [r["beta"] for r in plain] == [1.0, 1.0]
    assert records[0]["train_loss"] < plain[0]["train_loss"]


def test_the_label_seed_is_the_option_s_else_the_seed_s():
    """The label seed of the config: --label-seed S, by default --seed's; without --labels, none."""
    from jaxvae.cli.parser import build_parser
    from jaxvae.cli.train import _schedule

    parse = build_parser().parse_args
    assert _schedule(parse(["train", "--out", "o", "--labels", "10", "--seed", "3"])).label_seed == 3
    assert _schedule(parse(["train", "--out", "o", "--labels", "10", "--label-seed", "7"])).label_seed == 7
    assert _schedule(parse(["train", "--out", "o"])).label_seed is None


BAD = [
    (["--labels", "15"], "--labels must be a positive multiple of the 10 classes, got 15"),
    (["--labels", "2000"], "--labels 2000 takes 200 examples of each class: class 0 has"),
    (["--labels", "10", "--condition", "label"], "not with --condition label"),
    (["--label-seed", "3"], "--label-seed is a setting of M2: use it with --labels"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_labels_exit_2_with_one_line_and_nothing_written(tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    code, err = run_main(["train", "--dataset", "digits", "--out", str(out), "--quiet", *extra], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_labels_on_data_without_labels_are_refused(tmp_path, capsys):
    path = tmp_path / "unlabelled.npy"
    np.save(path, np.random.default_rng(0).random((40, 6)).astype(np.float32))
    out = tmp_path / "never"
    code, err = run_main(["train", "--dataset", str(path), "--labels", "10", "--out", str(out)], capsys)
    assert code == 2 and "--labels needs labelled data" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_sample_and_explore_take_m2_s_vae_of_x_given_y(m2_run, tmp_path, capsys):
    """`sample --label Y` of an M2 run draws from p(x|y) of its VAE (x (n, 8, 8) of decoded means in [0, 1]);
    without --label it asks for one; explore opens the run with its class selector."""
    from jaxvae.explore import Explorer

    out = tmp_path / "three.png"
    code, err = run_main(["sample", str(m2_run), "--label", "3", "-n", "6", "-o", str(out)], capsys)
    assert code == 0, err
    with np.load(out.with_suffix(".npz")) as arrays:
        assert arrays["x"].shape == (6, 8, 8) and 0 <= arrays["x"].min() and arrays["x"].max() <= 1
    code, err = run_main(["sample", str(m2_run), "-o", str(out)], capsys)
    assert code == 2 and "pass --label Y" in err and len(err.strip().splitlines()) == 1
    assert Explorer(m2_run).classes == 10


def test_a_sweep_of_m2_summarizes_its_test_errors_over_the_seeds(tmp_path):
    """The sweep's table shows M2 members' test U(x) and test error, with their mean and sample sd."""
    errors, bounds = [0.05, 0.08, 0.14], [-23.15, -23.13, -23.19]
    for seed, (error, bound) in enumerate(zip(errors, bounds, strict=True)):
        (tmp_path / f"seed-{seed}").mkdir()
        record = {"epoch": 1, "train_elbo": bound, "test_elbo": bound, "test_classification_error": error}
        (tmp_path / f"seed-{seed}" / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    table = summary(tmp_path, {f"seed-{seed}": "finished" for seed in range(3)}).splitlines()
    assert "test U(x), nats" in table[0] and "test error, %" in table[0]
    assert table[3].split()[1:4] == ["1", "-23.19", "14.00"]
    mean = f"{statistics.mean(errors) * 100:.2f}"
    spread = f"+- {statistics.stdev(bounds):.2f}, +- {statistics.stdev(errors) * 100:.2f} over 3 seeds"
    assert table[4].split()[5] == mean and table[4].endswith(spread)
