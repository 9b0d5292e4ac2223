"""Training: one compilation, no lost examples, determinism, learning, exact reload."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvae
from jaxvae.builder import build_objective, build_optimizer
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.evaluate import mean_bounds, mean_elbo
from jaxvae.keys import Run, run_key
from jaxvae.looping import COMPILED, ON_HOST, batch_indices, for_model
from jaxvae.runs import best_validation, read_metrics, stopped_early
from jaxvae.train import (
    epoch_key,
    fit,
    init_state,
    make_epoch,
    make_step,
)


def small_config(**train):
    return RunConfig(ModelConfig(data_shape=(8, 8), hidden=(64,)), TrainConfig(**{"epochs": 3, **train}))


def test_batch_indices_use_every_example_once():
    order = jnp.asarray(np.random.default_rng(0).permutation(103))
    idx, w = batch_indices(order, 32)
    assert idx.shape == (4, 32) and float(w.sum()) == 103
    assert sorted(np.asarray(idx)[np.asarray(w) == 1].tolist()) == list(range(103))


@pytest.mark.slow
def test_weighted_batch_loss_ignores_padding():
    """A padded batch's loss equals the plain mean over its real examples."""
    from jaxvae.train import batch_loss

    config = small_config()
    params, static = eqx.partition(init_state(config).vae, eqx.is_inexact_array)
    x = jnp.asarray(np.random.default_rng(1).random((5, 64)), jnp.float32)
    padded = jnp.concatenate([x, jnp.ones((3, 64))])
    w = jnp.array([1.0] * 5 + [0.0] * 3)
    key = jax.random.PRNGKey(0)
    objective = build_objective(config.train)
    loss_real, _ = batch_loss(params, static, x, jnp.ones(5), key, objective)
    loss_padded, _ = batch_loss(params, static, padded, w, key, objective)
    # same key, different batch shape: compare with the per-example ELBO computed directly instead
    from jaxvae.objectives import elbo

    vae = eqx.combine(params, static)
    direct = -float(jnp.mean(elbo(vae, padded, key=key).elbo[:5]))
    np.testing.assert_allclose(float(loss_padded), direct, rtol=1e-6)  # the loss sums its two terms separately
    assert np.isfinite(float(loss_real))


@pytest.mark.slow
def test_step_and_epoch_compile_once():
    """Also across KL weights: the objective's beta is traced, so a warm-up does not recompile."""
    config = small_config()
    state = init_state(config)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    optimizer = build_optimizer(config.train)
    step = jax.jit(make_step(static, optimizer, config.train))
    x, w = jnp.ones((32, 64)) * 0.5, jnp.ones(32)
    opt_state, objective = state.opt_state, build_objective(config.train)
    for i in range(3):
        weighted = objective.with_kl_weight(jnp.float32(i / 3))
        params, opt_state, _, _ = step(params, opt_state, x, w, jax.random.PRNGKey(i), weighted)
    assert step._cache_size() == 1
    epoch = make_epoch(static, optimizer, config.train)
    data = jnp.asarray(np.random.default_rng(0).random((100, 64)), jnp.float32)
    for e in (1, 2, 3):
        weighted = objective.with_kl_weight(jnp.float32(e / 3))
        params, opt_state, _, _ = epoch(params, opt_state, data, epoch_key(0, e), weighted)
    assert epoch._cache_size() == 1


def test_host_loop_epoch_is_the_compiled_epoch(caplog):
    """A convolutional model's epoch on the CPU loops on the host over one compiled step per batch
    (`looping.ON_HOST`): the same batches, binarization and noise as the compiled epoch, so the same
    parameters and bounds to float tolerance; the step compiles once for every batch of every epoch."""
    conv = RunConfig(
        ModelConfig((8, 8), latent_dim=2, hidden=(3, 4), architecture="conv"),
        TrainConfig(batch_size=32, binarize="dynamic"),
    )
    state = init_state(conv)
    params, static = eqx.partition(state.vae, eqx.is_inexact_array)
    assert for_model(static) is ON_HOST
    assert for_model(eqx.partition(init_state(small_config()).vae, eqx.is_inexact_array)[1]) is COMPILED
    optimizer, objective = build_optimizer(conv.train), build_objective(conv.train)
    data = jnp.asarray(np.random.default_rng(0).random((100, 64)), jnp.float32)  # 4 batches, the last padded
    scanned = make_epoch(static, optimizer, conv.train, loop=COMPILED)(
        *jax.tree.map(jnp.copy, (params, state.opt_state)), data, epoch_key(0, 1), objective
    )
    host_loop = make_epoch(static, optimizer, conv.train)
    with jax.log_compiles(), caplog.at_level("WARNING"):
        looped = host_loop(params, state.opt_state, data, epoch_key(0, 1), objective)
        looped = jax.device_get(looped)  # the next epoch donates its inputs
        host_loop(*looped[:2], data, epoch_key(0, 2), objective.with_kl_weight(jnp.float32(0.5)))
    assert sum("Compiling jit(scan_step)" in r.getMessage() for r in caplog.records) == 1
    for a, b in zip(jax.tree.leaves(scanned[:3]), jax.tree.leaves(looped[:3]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert bool(scanned[3]) and bool(looped[3])


@pytest.mark.slow
def test_training_on_digits_improves_test_elbo_and_reloads_exactly(tmp_path):
    """10 epochs on digits: the test ELBO rises by more than 15 nats over the untrained model's
    (about -44 nats, 64 pixels at log 2 each, to about -26). A function compiled for the built model runs on
    the trained and the reloaded one without compiling again."""
    data = load_dataset("digits")
    config = small_config(epochs=10)
    params, static = eqx.partition(init_state(config).vae, eqx.is_array)
    score = jax.jit(lambda p, x: mean_elbo(eqx.combine(p, static), x, jax.random.PRNGKey(0))["elbo"])
    before = float(score(params, jnp.asarray(data.x_test)))
    vae = fit(config, data, tmp_path / "run", progress=False)
    metrics = read_metrics(tmp_path / "run")
    assert [m["epoch"] for m in metrics] == list(range(1, 11))
    assert metrics[-1]["test_elbo"] > before + 15
    assert {"epoch", "train_elbo", "test_elbo", "seconds", "examples_per_second"} <= set(metrics[0])
    loaded = jaxvae.load(tmp_path / "run")
    for a, b in zip(
        jax.tree.leaves(eqx.filter(vae, eqx.is_array)), jax.tree.leaves(eqx.filter(loaded, eqx.is_array)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for model in (vae, loaded):
        score(eqx.filter(model, eqx.is_array), jnp.asarray(data.x_test))
    assert score._cache_size() == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["epochs"] == 10
    assert len(list((tmp_path / "run" / "figures").glob("*.png"))) >= 4


@pytest.mark.slow
def test_same_seed_same_numbers_and_resume_continues(tmp_path):
    data = load_dataset("digits")
    fit(small_config(epochs=3, binarize="dynamic"), data, tmp_path / "a", progress=False)
    fit(small_config(epochs=2, binarize="dynamic"), data, tmp_path / "b", progress=False)
    fit(small_config(epochs=3, binarize="dynamic"), data, tmp_path / "b", resume=True, progress=False)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    for key in ("train_elbo", "test_elbo"):
        assert [m[key] for m in a] == [m[key] for m in b]


@pytest.mark.slow
def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path):
    """lr = 1e-30 leaves the float32 weights unchanged and the validation ELBO uses one fixed key, so no
    epoch improves on epoch 1: with patience 2 training stops after epoch 3 of 10, best.eqx is epoch 1."""
    from jaxvae import checkpoint

    config = small_config(epochs=10, lr=1e-30, validation_fraction=0.1, early_stopping=2)
    fit(config, load_dataset("digits"), tmp_path / "run", progress=False)
    metrics = read_metrics(tmp_path / "run")
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[0]["validation_elbo"] == metrics[1]["validation_elbo"] == metrics[2]["validation_elbo"]
    best = checkpoint.restore(tmp_path / "run" / "checkpoints" / "best.eqx", init_state(config))
    assert int(best.epoch) == 1


@pytest.mark.slow
def test_early_stopping_does_not_count_the_kl_warmup(tmp_path):
    """As above with a 3-epoch KL warm-up: epochs 1 to 3 do not count, so patience 2 stops after epoch 5."""
    config = small_config(epochs=10, lr=1e-30, validation_fraction=0.1, early_stopping=2, kl_warmup_epochs=3)
    fit(config, load_dataset("digits"), tmp_path / "run", progress=False)
    assert [m["epoch"] for m in read_metrics(tmp_path / "run")] == [1, 2, 3, 4, 5]


def test_early_stopping_stops_where_the_vampprior_code_does():
    """Against a transcription of the loop of the Exemplar VAE code (`density_estimation.py`, lines 152-162:
    a counter e reset on a better validation loss and during the warm-up, a break once e > patience) on
    random validation curves. Their beta = epoch / warmup is full at epoch `warmup`, ours (epoch - 1) / W at
    epoch W + 1, and their e > P lets P + 1 epochs pass: so their (warmup, P) is our (warmup - 1, P + 1)."""
    from jaxvae.runs import stopped_early

    def theirs(losses, warmup, patience):
        best_loss, e = np.inf, 0
        for epoch, loss in enumerate(losses, 1):
            if loss < best_loss:
                e, best_loss = 0, loss
            else:
                e += 1
                if epoch < warmup:
                    e = 0
                if e > patience:
                    return epoch
        return len(losses)

    def ours(losses, warmup, patience):
        tc = TrainConfig(validation_fraction=0.1, early_stopping=patience, kl_warmup_epochs=warmup)
        best, best_epoch = -np.inf, 0
        for epoch, loss in enumerate(losses, 1):
            if stopped_early(tc, epoch - 1, best_epoch):
                return epoch - 1
            if -loss > best:
                best, best_epoch = -loss, epoch
        return len(losses)

    rng = np.random.default_rng(0)
    stops = set()
    for _ in range(300):
        warmup, patience = int(rng.integers(1, 20)), int(rng.integers(0, 8))
        losses = np.cumsum(rng.normal(-0.05, 1.0, 80))  # a drifting, noisy curve: many stops, some late
        stops.add(theirs(losses, warmup, patience))
        assert ours(losses, warmup - 1, patience + 1) == theirs(losses, warmup, patience)
    assert len(stops) > 20  # the curves exercise the rule, not one outcome


@pytest.mark.slow
def test_best_checkpoint_is_the_model_of_the_best_validation_elbo(tmp_path):
    """Re-evaluating best.eqx on the validation split (same split, same key) gives the best recorded value."""
    from jaxvae import checkpoint
    from jaxvae.data import split_validation

    data = load_dataset("digits")
    config = small_config(epochs=4, validation_fraction=0.2, early_stopping=4)
    fit(config, data, tmp_path / "run", progress=False)
    metrics = read_metrics(tmp_path / "run")
    assert len(metrics) == 4 and all(np.isfinite(m["validation_elbo"]) for m in metrics)
    best = max(metrics, key=lambda m: m["validation_elbo"])
    state = checkpoint.restore(tmp_path / "run" / "checkpoints" / "best.eqx", init_state(config))
    assert int(state.epoch) == best["epoch"]
    _, x_valid = split_validation(data, 0.2)
    valid_key = jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 3)  # the key train.py uses
    again = float(mean_elbo(state.vae, jnp.asarray(x_valid), valid_key)["elbo"])
    np.testing.assert_allclose(again, best["validation_elbo"], rtol=1e-6)


def test_early_stopping_follows_the_bound_the_objective_trains():
    """Validation records whose ELBO peaks at epoch 3 and L_K at epoch 6: an IWAE run's best epoch is 6 and
    with patience 3 it stops at epoch 9, an ELBO run's is 3 and it stops at epoch 6."""
    elbo = [-9.0, -8.0, -7.0, -7.5, -7.6, -7.7, -7.8, -7.9, -8.0]
    l_k = [-8.0, -7.0, -6.5, -6.4, -6.3, -6.2, -6.25, -6.3, -6.3]
    pairs = enumerate(zip(elbo, l_k, strict=True), 1)
    records = [{"epoch": e, "validation_elbo": a, "validation_iwae_bound": b} for e, (a, b) in pairs]
    for config, best_epoch, stop in (
        (TrainConfig(objective="iwae", samples=5, validation_fraction=0.1, early_stopping=3), 6, 9),
        (TrainConfig(validation_fraction=0.1, early_stopping=3), 3, 6),
    ):
        bound = build_objective(config).bound_key
        assert best_validation(records, bound) == (records[best_epoch - 1][f"validation_{bound}"], best_epoch)
        stops = [e for e in range(1, 10) if stopped_early(config, e, best_validation(records[:e], bound)[1])]
        assert stops[0] == stop
    named = {("iwae", 1): "L_5", ("piwae", 2): "L_10", ("miwae", 2): "MIWAE(2, 5)", ("elbo", 1): "ELBO"}
    for (objective, groups), name in named.items():
        assert build_objective(TrainConfig(objective=objective, samples=5, groups=groups)).name == name
    assert build_objective(TrainConfig(objective="ciwae", ciwae_beta=0.25)).name == "CIWAE(0.25)"


@pytest.mark.slow
def test_best_checkpoint_of_an_iwae_run_is_that_of_the_best_validation_l_k(tmp_path):
    """An IWAE run (K = 3) validates L_3 beside the ELBO; best.eqx is the model of the epoch of the best L_3,
    and evaluating L_3 again on the validation split with the run's key gives the recorded value."""
    from jaxvae import checkpoint
    from jaxvae.data import split_validation

    data = load_dataset("digits")
    config = small_config(epochs=4, objective="iwae", samples=3, validation_fraction=0.2, early_stopping=4)
    fit(config, data, tmp_path / "run", progress=False)
    metrics = read_metrics(tmp_path / "run")
    assert all(m["validation_iwae_bound"] > m["validation_elbo"] for m in metrics)
    best = max(metrics, key=lambda m: m["validation_iwae_bound"])
    state = checkpoint.restore(tmp_path / "run" / "checkpoints" / "best.eqx", init_state(config))
    assert int(state.epoch) == best["epoch"]
    _, x_valid = split_validation(data, 0.2)
    valid_key = jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 3)  # the key train.py uses
    again = mean_bounds(state.vae, build_objective(config.train), jnp.asarray(x_valid), valid_key)["iwae_bound"]
    np.testing.assert_allclose(float(again), best["validation_iwae_bound"], rtol=1e-6)


@pytest.mark.slow
def test_metrics_record_the_warmup_and_the_iwae_bound(tmp_path):
    """The epoch's KL weight is recorded (beta 0.5 over 2 epochs: 0, 0.25, 0.5); an IWAE run records its
    training bound L_K beside the ELBO, and L_K >= mean_k log w_k holds for every draw (Jensen)."""
    data = load_dataset("digits")
    fit(small_config(epochs=3, beta=0.5, kl_warmup_epochs=2), data, tmp_path / "warm", progress=False)
    metrics = read_metrics(tmp_path / "warm")
    assert [m["beta"] for m in metrics] == [0.0, 0.25, 0.5] and "train_iwae_bound" not in metrics[0]
    fit(small_config(epochs=1, objective="iwae", samples=4), data, tmp_path / "iwae", progress=False)
    (record,) = read_metrics(tmp_path / "iwae")
    assert record["train_iwae_bound"] > record["train_elbo"] and record["beta"] == 1.0


def seed_vae_reference(weights, x_train, x_test, *, seed: int, epochs: int, batch: int, iwae_samples: int = 0):
    """The seed notebook's VAE written out in plain JAX, trained by optax's Adam at 1e-3 from `weights` (the
    encoder's and decoder's (W, b) pairs): tanh MLPs, q = N(mu, exp(log_var)), z = mu + sigma * eps, Bernoulli
    logits, the KL to N(0, I) in closed form; with `iwae_samples` K, on L_K = log mean_k w_k instead of the
    ELBO. It shares with jaxvae only the documented draws: the epoch key `epoch_key(seed, e)` split into an
    order key (a permutation) and one key per batch of `batch` (the last padded at weight 0) drawing eps
    (S, B, k); the test ELBO's key `run_key(seed, Run.TEST)`, split once per chunk of 1,000.
    Returns per epoch (train ELBO, train L_K or None, test ELBO, test KL), nats."""
    import optax

    def mlp(layers, h):
        for w, b in layers[:-1]:
            h = jnp.tanh(h @ w.T + b)
        w, b = layers[-1]
        return h @ w.T + b

    def draws(weights, x, key, samples):
        """(log p(x|z), log p(z) - log q(z|x), closed-form KL), the first two (S, n), the KL (n,)."""
        mean, log_var = jnp.split(mlp(weights[0], x), 2, axis=-1)
        eps = jax.random.normal(key, (samples, *mean.shape))
        logits = mlp(weights[1], mean + jnp.exp(0.5 * log_var) * eps)
        log_likelihood = jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
        log_ratio = jnp.sum(-0.5 * (mean + jnp.exp(0.5 * log_var) * eps) ** 2 + 0.5 * eps**2 + 0.5 * log_var, -1)
        return log_likelihood, log_ratio, 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1 - log_var, axis=-1)

    def loss(weights, x, w, key):
        log_likelihood, log_ratio, kl = draws(weights, x, key, iwae_samples or 1)
        if not iwae_samples:
            elbo = log_likelihood[0] - kl
            return -(w @ elbo) / jnp.sum(w), (w @ elbo, jnp.nan)
        log_w = log_likelihood + log_ratio
        bound = jax.nn.logsumexp(log_w, axis=0) - jnp.log(iwae_samples)
        return -(w @ bound) / jnp.sum(w), (w @ jnp.mean(log_w, axis=0), w @ bound)

    adam = optax.adam(1e-3)

    @jax.jit  # one program a step, not one per operation
    def step(weights, state, x, w, key):
        (_, sums), grads = jax.value_and_grad(loss, has_aux=True)(weights, x, w, key)
        updates, state = adam.update(grads, state, weights)
        return optax.apply_updates(weights, updates), state, sums

    state, n, records = adam.init(weights), len(x_train), []
    for epoch in range(1, epochs + 1):
        order_key, steps_key = jax.random.split(epoch_key(seed, epoch))
        idx, w = batch_indices(jax.random.permutation(order_key, n), batch)
        totals = np.zeros(2)
        for i, wi, key in zip(idx, w, jax.random.split(steps_key, len(idx)), strict=True):
            weights, state, sums = step(weights, state, x_train[i], wi, key)
            totals = totals + np.asarray(sums)
        log_likelihood, _, kl = draws(weights, x_test, jax.random.split(run_key(seed, Run.TEST), 1)[0], 1)
        train_bound = totals[1] / n if iwae_samples else None
        records.append((totals[0] / n, train_bound, float(jnp.mean(log_likelihood[0] - kl)), float(jnp.mean(kl))))
    return records


def seed_model_weights(vae):
    """The (W, b) pairs of the seed model's encoder and of its decoder."""
    return tuple([(layer.weight, layer.bias) for layer in net.layers] for net in (vae.encoder, vae.decoder))


@pytest.mark.slow
@pytest.mark.parametrize("iwae_samples", [0, 4])
def test_the_seeds_model_trains_as_the_seed_notebook_s_vae_written_out(tmp_path, iwae_samples):
    """Two epochs of the seed's model on digits, with the ELBO and with IWAE (K = 4, the standard gradient):
    the metrics of `seed_vae_reference` from the same initial weights, to 1e-4 nats (another seed's differ
    by 0.2)."""
    train = {"objective": "iwae", "samples": iwae_samples} if iwae_samples else {}
    config = RunConfig(ModelConfig(data_shape=(8, 8)), TrainConfig(epochs=2, **train))
    data = load_dataset("digits")
    fit(config, data, tmp_path / "run", progress=False)
    records = read_metrics(tmp_path / "run")
    got = [(r["train_elbo"], r.get("train_iwae_bound"), r["test_elbo"], r["test_kl"]) for r in records]
    x_train, x_test = (jnp.asarray(a, jnp.float32) for a in (data.x_train, data.x_test))
    weights = seed_model_weights(init_state(config).vae)
    expected = seed_vae_reference(weights, x_train, x_test, seed=0, epochs=2, batch=32, iwae_samples=iwae_samples)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose([v for v in a if v is not None], [v for v in b if v is not None], atol=1e-4)
        assert (a[1] is None) == (b[1] is None)
    assert records[0]["kl_estimator"] == "closed form"


@pytest.mark.slow
def test_every_objective_and_gradient_trains_and_records_its_bounds(tmp_path):
    """One epoch each: finite metrics, and each objective's bounds beside the ELBO in metrics.jsonl."""
    data = load_dataset("digits")
    runs = {
        "iwae-dreg": ({"objective": "iwae", "samples": 3, "gradient": "dreg"}, {"train_iwae_bound"}),
        "piwae-stl": ({"objective": "piwae", "groups": 2, "samples": 2, "gradient": "stl"}, {"train_miwae_bound"}),
        "ciwae": ({"objective": "ciwae", "samples": 3, "ciwae_beta": 0.3}, {"train_ciwae_bound", "train_iwae_bound"}),
        "elbo-stl": ({"gradient": "stl", "beta": 0.5}, set()),
    }
    for name, (settings, bounds) in runs.items():
        fit(small_config(epochs=1, **settings), data, tmp_path / name, progress=False)
        (record,) = read_metrics(tmp_path / name)
        assert bounds <= set(record) and all(np.isfinite(record[k]) for k in bounds | {"train_elbo", "test_elbo"})


def snapshot(folder):
    """Every file under `folder`: path -> (bytes, modification time in ns)."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_with_nothing_left_to_train_writes_nothing(tmp_path):
    """A finished run resumed to the epochs it has: no file written or touched (no figures redrawn, no
    TensorBoard events appended), and the model returned is the run's own."""
    data, run = load_dataset("digits"), tmp_path / "run"
    config = small_config(epochs=2, tensorboard=True)
    fit(config, data, run, progress=False)
    before = snapshot(run)
    assert any(p.parent.name == "tensorboard" for p in before) and any(p.suffix == ".png" for p in before)
    vae = fit(config, data, run, resume=True, progress=False)
    assert snapshot(run) == before
    for a, b in zip(*(jax.tree.leaves(eqx.filter(v, eqx.is_array)) for v in (vae, jaxvae.load(run))), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_string_run_folder_trains_as_a_path_does(tmp_path):
    """`fit` takes the run folder as a str, as `jaxvae.load` does."""
    fit(small_config(epochs=1), load_dataset("digits"), str(tmp_path / "run"), progress=False)
    assert [m["epoch"] for m in read_metrics(tmp_path / "run")] == [1]
    assert len(jaxvae.load(str(tmp_path / "run")).encode(jnp.zeros((3, 64))).mean) == 3


def test_data_outside_the_unit_interval_hints_what_the_command_can_change():
    """Training may switch to a Gaussian likelihood; a trained run's evaluation cannot: it says rescale only."""
    import pytest

    from jaxvae.data import Dataset
    from jaxvae.errors import InputError
    from jaxvae.train import check_data

    x = np.linspace(0, 255, 64 * 4, dtype=np.float32).reshape(4, 64)
    data = Dataset(x, None, x, None, (8, 8))
    with pytest.raises(InputError, match=r"--likelihood bernoulli: rescale the data to \[0, 1\] or train with"):
        check_data(data, small_config())
    with pytest.raises(InputError, match=r"the run's bernoulli: rescale the data to \[0, 1\]$"):
        check_data(data, small_config(), training=False)
    gaussian = RunConfig(ModelConfig(data_shape=(8, 8), likelihood="gaussian"), TrainConfig(binarize="static"))
    with pytest.raises(InputError, match=r"binarization \(--binarize static\): rescale the data to \[0, 1\]$"):
        check_data(data, gaussian, training=False)
