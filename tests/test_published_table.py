"""benchmarks/published_table.py: each row's command is the protocol of the Exemplar VAE code, and trains
(a short check, on small Fashion-MNIST-shaped data); --report reads run folders finished or not (fake ones,
nothing trained), marks a short check as not the protocol; --row resumes and evaluates."""

import importlib.util
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import checkpoint, sweep, sweep_statistics
from jaxvae.builder import build_objective
from jaxvae.cli.parser import build_parser
from jaxvae.cli.train import _schedule
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.runs import BEST_CHECKPOINT, CHECKPOINTS, CONFIG, METRICS, save_checkpoint
from jaxvae.train import init_state

spec = importlib.util.spec_from_file_location(
    "published_table", Path(__file__).parents[1] / "benchmarks" / "published_table.py"
)
published_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(published_table)

# Their settings, read off density_estimation.py's defaults and base_load_data.py (see docs/published-table.md)
THEIRS = {"batch_size": 100, "lr": 5e-4, "epochs": 2000, "binarize": "dynamic", "optimizer": "adam-normgrad"}


@pytest.mark.parametrize("name", published_table.ROWS)
def test_each_row_s_command_gives_their_protocol(name, tmp_path):
    """The row's command parses as `jaxvae train` options and gives their settings: 10,000 of Fashion-MNIST's
    60,000 training images held out, full KL weight from epoch 100 (their epoch / 100; jaxvae's own L_5 row
    has no KL term to weight), early stopping that lets 51 epochs after the warm-up pass without a better
    validation bound (their e > 50), the bound the row trains (the ELBO; L_5 for jaxvae's own row)."""
    command = published_table.train_command(name, tmp_path / name)
    assert command[1:4] == ["-m", "jaxvae.cli", "train"] and "--quiet" not in command  # it shows progress
    args = build_parser().parse_args(command[3:])
    schedule = _schedule(args)
    assert {k: getattr(schedule, k) for k in THEIRS} == THEIRS
    assert schedule.dataset == "fashion-mnist" and round(schedule.validation_fraction * 60000) == 10000
    warmup = 0 if name == "hvae-vamp-dreg" else 99  # L_K has no KL term to weight
    assert (schedule.kl_warmup_epochs, schedule.early_stopping) == (warmup, 51)
    assert args.architecture == "gated" and args.hidden == (300, 300) and args.log_var_range == (-6.0, 2.0)
    assert args.prior == ("vamp:500" if "vamp" in name else "normal")
    assert args.latent_dim == ((40,) if name.startswith("vae") else (40, 40))
    assert (args.model or "").endswith("/benchmarks/conv_hvae.py:build") == name.startswith("conv")
    objective = ("iwae", 5, "dreg") if name == "hvae-vamp-dreg" else ("elbo", 1, "reparam")
    assert (args.objective, args.samples, args.gradient) == objective
    assert build_objective(schedule).bound_key == ("iwae_bound" if name == "hvae-vamp-dreg" else "elbo")


def fashion_shaped(path: Path, n: int = 240) -> Path:
    """n of scikit-learn's 8 x 8 digits as 28 x 28 uint8 images (each pixel 3 x 3, a border of 2), in an .npy."""
    from sklearn.datasets import load_digits

    images = np.kron(load_digits().images[:n], np.ones((3, 3))) * 255 / 16
    np.save(path, np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.uint8))
    return path


@pytest.mark.slow
def test_a_row_s_command_trains_a_short_check_that_report_marks(tmp_path, capsys):
    """The Gaussian VAE row's command with --epochs 2, on 240 Fashion-MNIST-shaped images instead of
    Fashion-MNIST: the run records their settings, trains two epochs at the KL weight of their warm-up (0,
    then 1/99), validates its ELBO and improves it on the training set; --report lists it as a check, not as
    the row."""
    from jaxvae.cli import main

    name = "vae-gaussian"
    run_dir = tmp_path / "runs" / name
    command = published_table.train_command(name, run_dir, epochs=2)
    command[command.index("--dataset") + 1] = str(fashion_shaped(tmp_path / "fashion.npy"))
    assert main(command[3:]) == 0
    config = RunConfig.load(run_dir / CONFIG)
    assert {k: getattr(config.train, k) for k in THEIRS} == THEIRS | {"epochs": 2}
    assert config.model.hidden == (300, 300) and config.model.architecture == "gated"
    records = [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["beta"] for r in records] == [0.0, pytest.approx(1 / 99)]
    assert all(np.isfinite(r["validation_elbo"]) for r in records)
    assert records[1]["train_elbo"] > records[0]["train_elbo"]
    assert published_table.main(["--report", "--runs-dir", str(tmp_path / "runs")]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if f"({name})" in x]
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[2:4] == ["", ""]  # no jaxvae number, no difference: not the row
    assert cells[6].startswith("not the protocol: a check of 2 epochs (--epochs 2), finished at epoch 2")


def test_report_refuses_a_runs_dir_that_holds_no_row(tmp_path, capsys):
    """A misspelt --runs-dir (no such folder, or one without any row's run folder) is one line and exit 2."""
    (tmp_path / "elsewhere").mkdir()
    for runs_dir, said in (("runs/publised", "no such folder"), ("elsewhere", "holds no row's run folder")):
        with pytest.raises(SystemExit) as exited:
            published_table.main(["--report", "--runs-dir", str(tmp_path / runs_dir)])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and err.count("\n") == 1 and said in err, err


def conv_hvae():
    """benchmarks/conv_hvae.py, the ConvHVAE rows' model file, as a module."""
    spec = importlib.util.spec_from_file_location(
        "conv_hvae", Path(__file__).parents[1] / "benchmarks" / "conv_hvae.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conv_config(shape, layers=(40, 40)) -> ModelConfig:
    """The ConvHVAE rows' model options (without the file) for images of `shape`."""
    return ModelConfig(
        shape, latent_dim=sum(layers), hidden=(300, 300), architecture="gated", layers=layers,
        inference="top-down", decoder_input="all", log_var_range=(-6.0, 2.0),
    )  # fmt: skip


@pytest.mark.slow
def test_the_conv_hvae_has_their_networks_and_trains():
    """The file as `--model benchmarks/conv_hvae.py:build` gives it (recorded and checked by jaxvae.model_file).
    d_1 and d_2 come from two stacks of five gated convolutions (first kernels 3 and 7, `q_z1_layers_x` and
    `q_z_layers`), 294 features each of a 28 x 28 image (their h_size). On 8 x 8 digits: q(z_2 | x) reads only
    the second stack, q(z_1 | x, z_2) the first (autodiff gradients); the decoder's logits move with z_1 alone
    and with z_2 alone (Jacobian-vector products); ten Adam steps of the ELBO on 32 binarized digits lower
    the loss by more than 5 nats. One latent layer is refused with InputError by tracing alone (what
    `jaxvae train` checks before it makes a run folder)."""
    from sklearn.datasets import load_digits

    from jaxvae import model_file
    from jaxvae.builder import build_optimizer
    from jaxvae.errors import InputError
    from jaxvae.train import make_step

    spec = published_table.CONV_HVAE[1]
    big = eqx.filter_eval_shape(
        model_file.build, model_file.with_source(conv_config((28, 28)), spec), jnp.zeros(2, jnp.uint32)
    )
    assert [a.shape for a in eqx.filter_eval_shape(big.encoder, jnp.ones(784))] == [(294,), (294,)]
    config = RunConfig(model_file.with_source(conv_config((8, 8), (4, 2)), spec), TrainConfig(batch_size=32))
    vae = init_state(config).vae  # as `jaxvae train` builds it: one program, compiled unoptimized
    stacks = vae.encoder.first, vae.encoder.second
    assert [s.layers[0].h.conv.weight.shape[-1] for s in stacks] == [3, 7]
    x = jnp.asarray(load_digits().images[:32].reshape(32, 64) > 8, jnp.float32)

    @eqx.filter_jit
    def stack_gradients(mean_of):
        grads = eqx.filter_grad(lambda e: jnp.sum(mean_of(eqx.tree_at(lambda m: m.encoder, vae, e))))(vae.encoder)
        return [
            jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(s)])) for s in (grads.first, grads.second)
        ]

    top = stack_gradients(lambda m: m.top_gaussian(x[:2]).mean)
    z2 = vae.top_gaussian(x[:1]).mean
    bottom = stack_gradients(lambda m: m.blocks[0].posterior(m.encoder(x[0])[0][None], z2).mean)
    assert top[0] == 0 < top[1] and bottom[0] > 0 == bottom[1]
    z = jnp.linspace(-1, 1, 6)
    for layer in (jnp.arange(6) < 4, jnp.arange(6) >= 4):  # along z_1 alone, then z_2 alone
        _, change = jax.jvp(lambda z: vae.decode(z).logits, (z,), (layer.astype(jnp.float32),))
        assert float(jnp.abs(change).max()) > 1e-3
    params, static = eqx.partition(vae, eqx.is_inexact_array)
    optimizer = build_optimizer(config.train)
    step = jax.jit(make_step(static, optimizer, config.train))
    opt_state, losses = optimizer.init(params), []
    for i in range(10):
        params, opt_state, sums, finite = step(
            params, opt_state, x, jnp.ones(32), jax.random.PRNGKey(i), build_objective(config.train)
        )
        losses.append(-float(sums["elbo"]) / 32)
        assert bool(finite)
    assert losses[-1] < losses[0] - 5, losses
    with pytest.raises(InputError, match="builds 2 layers"):
        model_file.check(model_file.with_source(ModelConfig((8, 8), latent_dim=4, architecture="gated"), spec))


def fake_run(run_dir: Path, epochs: int, best_epoch: int, seconds: float = 36.0, model=None) -> RunConfig:
    """A run folder as training leaves it after `epochs` epochs of the protocol's schedule (warm-up 99,
    patience 51), whose validation ELBO peaked at `best_epoch`: config.json and metrics.jsonl, and, for a
    `model` (ModelConfig), its initial state saved as the epoch checkpoint and best.eqx."""
    model = model or ModelConfig(data_shape=(28, 28), latent_dim=40, hidden=(300, 300), architecture="gated")
    train = TrainConfig(
        "digits", "dynamic", epochs=2000, validation_fraction=0.2, early_stopping=51, kl_warmup_epochs=99
    )
    config = RunConfig(model, train)
    run_dir.mkdir(parents=True)
    config.save(run_dir / CONFIG)
    lines = [
        {"epoch": e, "train_elbo": -240.0, "test_elbo": -241.0, "test_reconstruction": -220.0, "test_kl": 21.0,
         "beta": min(1.0, (e - 1) / 99), "kl_estimator": "closed form", "seconds": seconds,
         "examples_per_second": 1.0, "validation_elbo": -230.0 - abs(e - best_epoch) / 100}
        for e in range(1, epochs + 1)
    ]  # fmt: skip
    (run_dir / METRICS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    if model.data_shape == (8, 8):
        state = init_state(config)._replace(epoch=jnp.int32(epochs))
        save_checkpoint(run_dir, state, 3)
        checkpoint.save(run_dir / CHECKPOINTS / BEST_CHECKPOINT, state)
    return config


def test_report_of_finished_unfinished_and_missing_rows(tmp_path, capsys):
    """vae-gaussian stopped (151 - 100 = 51 epochs without a better bound) and evaluated; hvae-gaussian one
    epoch short of stopping; hvae-vamp still in its warm-up, where the count has not begun; vae-vamp absent."""
    fake_run(tmp_path / "vae-gaussian", 151, 100)
    (tmp_path / "vae-gaussian" / published_table.RESULT).write_text(
        json.dumps({"log_likelihood": -229.1, "log_likelihood_se": 0.5, "n": 10000})
    )
    fake_run(tmp_path / "hvae-gaussian", 150, 100, seconds=72.0)
    fake_run(tmp_path / "hvae-vamp", 98, 20)
    assert published_table.main(["--report", "--runs-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    rows = {line.split(" | ")[0].rsplit("(", 1)[1].rstrip(")"): line for line in lines}
    assert rows["vae-gaussian"].startswith("| VAE, Gaussian prior (vae-gaussian) | -228.70 ± 0.15 | -229.10 ± 0.50")
    assert "| -0.40 | 100 | 1.51 | finished at epoch 151, best validation ELBO -230.00," in rows["vae-gaussian"]
    assert "| 100 | 3.00 | unfinished at epoch 150, best validation ELBO -230.00 |" in rows["hvae-gaussian"]
    assert "| 20 | 0.98 | unfinished at epoch 98," in rows["hvae-vamp"]
    assert "not started" in rows["vae-vamp"] and "not started" in rows["convhvae-gaussian"]


def test_a_row_over_seeds_trains_them_together_and_reports_their_mean_and_sd(tmp_path, capsys):
    """--seeds 3 adds `--seeds 3` to a new row's command (seeds 14, 15, 16); a sweep folder is resumed as
    one. Its report: the mean and sd (n - 1) over the seeds of the members' test L_5000 (numpy's), the
    difference of the mean, each member's best epoch, their hours summed."""
    args = build_parser().parse_args(published_table.train_command("vae-gaussian", tmp_path / "new", 3)[3:])
    assert (args.seeds, args.seed) == (3, 14)
    run_dir = tmp_path / "vae-gaussian"
    names, ours = ["seed-14", "seed-15", "seed-16"], [-228.9, -228.1, -228.5]
    for name, (epochs, best) in zip(names, [(151, 100), (170, 119), (140, 60)], strict=True):
        fake_run(run_dir / name, epochs, best)
    (run_dir / "sweep.json").write_text(json.dumps({"members": [{"name": n} for n in names]}))
    results = {n: {"log_likelihood": v, "n": 10000} for n, v in zip(names, ours, strict=True)}
    groups = sweep_statistics.summarize(results, sweep_statistics.groups(sweep.read_members(run_dir)))
    (run_dir / published_table.RESULT).write_text(json.dumps({"members": results, "groups": groups}))
    assert published_table.train_command("vae-gaussian", run_dir, 3)[3:5] == ["train", "--resume"]
    assert published_table.main(["--report", "--runs-dir", str(tmp_path)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "(vae-gaussian)" in x]
    mean, sd = np.mean(ours), np.std(ours, ddof=1)
    cells = [c.strip() for c in line.split("|")[2:-1]]
    assert cells[1:5] == [f"{mean:.2f} ± {sd:.2f} (sd over 3 seeds)", f"{mean + 228.70:+.2f}", "100, 119, 60", "4.61"]
    assert cells[5].startswith("3 seeds, unfinished at epochs 151, 170, 140")  # the third has 10 epochs to go


@pytest.mark.slow
def test_a_row_resumes_its_run_folder_and_evaluates_the_best_model(tmp_path, capsys):
    """A tiny digits run that early stopping has already ended: --row resumes it (no epoch trains), then
    evaluates best.eqx with 5,000 importance samples on its test images and reports it."""
    model = ModelConfig(data_shape=(8, 8), latent_dim=2, hidden=(8,), architecture="gated")
    fake_run(tmp_path / "vae-gaussian", 151, 100, model=model)
    assert published_table.main(["--row", "vae-gaussian", "--runs-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "vae-gaussian" / published_table.RESULT).read_text())
    assert result["checkpoint"] == "best" and result["iw_samples"] == 5000
    assert result["n"] > 300 and result["log_likelihood_se"] > 0
    assert len((tmp_path / "vae-gaussian" / METRICS).read_text().splitlines()) == 151  # nothing trained
    out = capsys.readouterr().out
    assert f"{result['log_likelihood']:.2f} ± {result['log_likelihood_se']:.2f}" in out
    assert "finished at epoch 151" in out
