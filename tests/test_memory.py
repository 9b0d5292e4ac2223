"""The memory a setting needs (`jaxvae.memory`): its estimates against the arrays a built model and a compiled
training step really hold, and the command line's refusals of sizes that cannot fit (one line, exit 2,
nothing written)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from jaxvae import memory
from jaxvae.cli import main
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.errors import InputError, SettingError
from jaxvae.objectives import Iwae
from jaxvae.train import init_state


def config(hidden=(16,), latent_dim=2, layers=(), prior="normal", **train) -> RunConfig:
    model = ModelConfig(data_shape=(8, 8), latent_dim=latent_dim, layers=layers, hidden=hidden, prior=prior)
    return RunConfig(model, TrainConfig(**train))


def float_bytes(tree) -> int:
    return sum(a.nbytes for a in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array)))


def test_parameter_bytes_are_the_closed_form_count_of_a_one_layer_mlp():
    # encoder d -> h -> (mean, log-variance) 2k; decoder k -> h -> d Bernoulli logits; weights and biases
    d, h, k = 64, 16, 2
    count = (d * h + h) + (h * 2 * k + 2 * k) + (k * h + h) + (h * d + d)
    assert memory.parameter_bytes(config((h,), k)) == 4 * count


@pytest.mark.parametrize(
    "settings",
    [{}, {"hidden": (32, 8), "latent_dim": 5, "layers": (3, 2)}, {"prior": "vamp:7"}],
    ids=["mlp", "deep", "vamp"],
)
def test_state_estimates_are_the_bytes_of_a_built_state(settings):
    """Traced, not built: the same bytes as the arrays of the state `train.init_state` builds."""
    c = config(**settings)
    state = init_state(c)
    assert memory.parameter_bytes(c) == float_bytes(state.vae)
    assert memory.train_state_bytes(c) == sum(a.nbytes for a in jax.tree.leaves(eqx.filter(state, eqx.is_array)))
    assert float_bytes(state.opt_state) == 2 * float_bytes(state.vae)  # Adam: two moments per parameter


def test_state_estimates_of_a_model_file_whose_model_holds_functions(tmp_path):
    """A user's network may hold functions among its leaves (eqx.nn.MLP's activation): only arrays count, the
    same bytes as the state `init_state` builds (the traced count of a sweep's members, `sweep.state_bytes`)."""
    from jaxvae import model_file, sweep

    (tmp_path / "mine.py").write_text(
        "import equinox as eqx, jax, jaxvae\n"
        "def build(config, key):\n"
        "    vae = jaxvae.build_model(config, key=key)\n"
        "    mlp = eqx.nn.MLP(config.data_dim, vae.posterior.size, 16, depth=2, activation=jax.nn.gelu, key=key)\n"
        "    return eqx.tree_at(lambda m: m.encoder, vae, mlp)\n"
    )
    c = config()
    c = RunConfig(model_file.with_source(c.model, f"{tmp_path / 'mine.py'}:build"), c.train)
    state = init_state(c)
    assert memory.parameter_bytes(c) == float_bytes(state.vae)
    assert sweep.state_bytes(c) == memory.train_state_bytes(c) == float_bytes(state) + 2 * 4  # two int32 counters


@pytest.mark.slow
@pytest.mark.parametrize("hidden, batch, samples", [((64,), 32, 64), ((200, 200), 20, 50)])
def test_a_training_step_needs_at_least_the_estimate_and_at_most_eight_times_it(hidden, batch, samples):
    """XLA's own account of a compiled step of L_K and Adam (its arguments, outputs and temporaries) against
    the lower bound `check_training` uses: the state, a gradient and batch x samples draws of the widest layer."""
    import optax

    c = config(hidden, objective="iwae", batch_size=batch, samples=samples)
    state = init_state(c)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    optimizer, objective = optax.adam(1e-3), Iwae(samples=samples)

    def step(params, opt_state, x, key):
        loss = lambda p: objective(eqx.combine(p, static), x, jnp.ones(batch), key=key)[0]  # noqa: E731
        updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    x, key = jnp.zeros((batch, 64)), jax.random.PRNGKey(0)
    compiled = jax.jit(step).lower(params, optimizer.init(params), x, key).compile()
    m = compiled.memory_analysis()
    held = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
    estimate = memory.train_state_bytes(c) + memory.parameter_bytes(c) + memory.draws_bytes(c.model, batch * samples)
    assert estimate <= held <= 8 * estimate


def test_check_training_refuses_one_byte_short_of_its_need():
    c = config((16,), batch_size=4, samples=3)
    parameters = memory.parameter_bytes(c)
    state = 3 * parameters + 2 * 4  # parameters, Adam's two moments, its step count and the epoch (int32)
    need = state + parameters + 4 * 3 * 64 * 4  # the state, a gradient, 12 draws of 64 logits
    memory.check_training(c, have=need)
    with pytest.raises(SettingError, match="batch_size 4 x samples 3 draws") as refused:
        memory.check_training(c, have=need - 1)
    assert refused.value.settings == ("batch_size", "samples")
    with pytest.raises(SettingError, match=r"^2 members \(seeds x sweep\) need .* at most 1 fit$") as refused:
        memory.check_training(c, members=2, have=need)  # one member's state and gradient fit, not two states
    assert refused.value.settings == ("seeds", "sweep")
    with pytest.raises(SettingError, match=r"^the model of hidden 16 and latent_dim 2 \(") as refused:
        memory.check_training(c, members=2, have=state + parameters - 1)
    assert refused.value.settings == ("hidden", "latent_dim")
    huge = config((16,), batch_size=10**8, samples=3)  # a batch beyond the training set is all of it
    memory.check_training(huge, examples=4, have=need)
    with pytest.raises(SettingError, match="batch_size 4 x samples 3 draws"):
        memory.check_training(huge, examples=4, have=need - 1)


def test_importance_samples_are_refused_past_32_bit_counts_and_past_memory():
    memory.check_importance_samples("--iw-samples", 2_147_483_500, chunk=500, have=2**40)
    with pytest.raises(InputError, match="--iw-samples 2147483501 is more draws .* at most 2147483500"):
        memory.check_importance_samples("--iw-samples", 2_147_483_501, chunk=500, have=2**40)
    memory.check_importance_samples("--iw-samples", 1000, chunk=500, have=5000)  # an int32 index and a mask byte
    with pytest.raises(InputError, match="--iw-samples 1000 needs 4.9 KiB to index its draws"):
        memory.check_importance_samples("--iw-samples", 1000, chunk=500, have=4999)


def test_available_memory_is_positive_and_at_most_the_machine_s():
    import os

    assert 0 < memory.available() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


TRAIN_REFUSALS = [
    (["--hidden", "1000000000"], "--hidden 1000000000"),
    (["--latent-dim", "1000000000"], "--latent-dim 1000000000"),
    (["--latent-dim", "2,1000000000"], "--latent-dim 2,1000000000"),
    (["--prior", "vamp:1000000000"], "--prior vamp:1000000000"),
    (["--samples", "100000000"], "--samples 100000000"),
    (["--objective", "miwae", "--groups", "100000", "--samples", "10000"], "--groups 100000"),
    (["--seeds", "3", "--samples", "10000000"], "--samples 10000000"),
    (["--sweep", "lr=0.001,0.01", "--hidden", "1000000000"], "the model of --hidden 1000000000"),
]


@pytest.mark.parametrize("options, named", TRAIN_REFUSALS, ids=[" ".join(o) for o, _ in TRAIN_REFUSALS])
def test_train_refuses_a_size_that_cannot_fit_before_writing(tmp_path, capsys, options, named):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--quiet", *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "of memory available" in err, err
    assert not out.exists()


def test_train_refuses_an_image_size_that_cannot_fit_before_resizing(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.new("L", (8, 8), 40 * i).save(tmp_path / "images" / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "images"), "--image-size", "100000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--image-size 100000,100000 (images of 10,000,000,000 pixels)" in err, err
    assert "of memory available" in err and not out.exists()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory") / "run"
    assert main(["train", "--out", str(folder), "--epochs", "1", "--hidden", "8", "--quiet"]) == 0
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, named",
    [
        (["evaluate", "RUN", "--iw-samples", "2147483648"], "--iw-samples 2147483648 is more draws"),
        (["evaluate", "RUN", "--gradient-snr", "1,10000000000"], "--gradient-snr 10000000000 asks for"),
        (["sample", "RUN", "-n", "1000000000", "-o", "OUT"], "-n 1000000000 asks for 1,000,000,000 draws"),
    ],
)
def test_commands_on_a_run_refuse_sizes_that_cannot_fit(run, tmp_path, capsys, command, named):
    figures = sorted(p.name for p in (run / "figures").iterdir())
    args = [str(run) if a == "RUN" else str(tmp_path / "s.png") if a == "OUT" else a for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err
    assert sorted(p.name for p in (run / "figures").iterdir()) == figures and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_the_evaluation_benchmark_refuses_sizes_that_cannot_fit():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_throughput.py"
    for options, said in (
        (["--samples", "2147483648"], "--samples 2147483648 is more draws than L_K counts"),
        (["--batch", "100000", "--chunk", "100000", "--samples", "100000"], "--batch x --chunk 100000 x 100000 asks"),
    ):
        done = subprocess.run([sys.executable, str(script), *options], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
