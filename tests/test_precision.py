"""bf16 products (`--precision bf16`): each layer against float64 products of bf16-rounded inputs, every
network part switched by `with_precision`, the numerical guards with bf16 products, and bf16 training of
the seed's model against fp32 within the spread between seeds."""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from jaxvae.builder import build_model
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.distributions import Bernoulli, ContinuousBernoulli, Normal, kl_normal
from jaxvae.networks import Conv, Linear, linear, with_precision
from jaxvae.objectives import elbo
from jaxvae.runs import read_metrics
from jaxvae.sweep import fit_sweep, member_configs

KEY = jax.random.PRNGKey(0)


def rounded(a) -> np.ndarray:
    """a rounded to bf16, as float64."""
    return np.asarray(jnp.asarray(a, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


def test_fp32_layers_compute_as_equinox():
    """The fp32 linear layer against float64 NumPy and Equinox's layer of the same parameters (its products
    summed in another order: equal to fp32 rounding); the convolution is Equinox's, bit for bit."""
    x = jax.random.normal(KEY, (7, 50))
    ours, theirs = jax.vmap(linear(50, 30, key=KEY))(x), jax.vmap(eqx.nn.Linear(50, 30, key=KEY))(x)
    layer = eqx.nn.Linear(50, 30, key=KEY)
    exact = np.asarray(x, np.float64) @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias, np.float64)
    np.testing.assert_allclose(np.asarray(ours), exact, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=0, atol=1e-5)
    conv = Conv(eqx.nn.Conv2d(2, 3, 3, stride=2, padding=1, key=KEY))
    image = jax.random.normal(KEY, (2, 9, 9))
    assert jnp.array_equal(conv(image), conv.conv(image))


def test_bf16_linear_is_the_exact_product_of_bf16_rounded_inputs():
    """Reference: float64 NumPy on the weight and input rounded to bf16 (their products are exact in fp32);
    fp32 accumulation of 300 terms errs by at most ~300 * 2^-24 of the sum of the terms' magnitudes."""
    layer = with_precision(linear(300, 20, key=KEY), jnp.bfloat16)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 300))
    got = np.asarray(jax.vmap(layer)(x), np.float64)
    w, xr = rounded(layer.weight), rounded(x)
    assert got.dtype == np.float64 and jax.vmap(layer)(x).dtype == jnp.float32
    scale = np.abs(xr) @ np.abs(w).T
    np.testing.assert_array_less(np.abs(got - (xr @ w.T + np.asarray(layer.bias))), 2e-5 * scale + 1e-7)
    fp32 = np.asarray(jax.vmap(with_precision(layer, jnp.float32))(x))
    assert np.max(np.abs(got - fp32)) > 1e-4  # the rounding is there: not the fp32 product


def test_bf16_convolution_is_the_fp32_convolution_of_rounded_inputs_to_bf16_round_off():
    """Equinox's convolution returns bf16 for bf16 inputs: the result is the fp32 convolution of the
    rounded weight and image, to one bf16 rounding (relative 2^-8) before the bias."""
    conv = Conv(eqx.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, key=KEY), jnp.bfloat16)
    image = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 5))
    got = np.asarray(conv(image), np.float64)
    exact = eqx.tree_at(lambda c: c.weight, conv.conv, jnp.asarray(rounded(conv.conv.weight), jnp.float32))
    want = np.asarray(exact(jnp.asarray(rounded(image), jnp.float32)), np.float64)
    bias = np.asarray(conv.conv.bias, np.float64)
    np.testing.assert_array_less(np.abs(got - want), 2**-8 * np.abs(want - bias) + 1e-6)


def network_operand_dtypes(model) -> set[str]:
    """The dtypes of the operands of the ELBO's forward matrix products and convolutions of matrices (a
    network's; the distributions' own products are of vectors)."""
    c = jnp.eye(3, model.condition_dim) if model.condition_dim else None  # one-hot conditions, one per example
    jaxpr = jax.make_jaxpr(lambda m, x: elbo(m, x, key=KEY, c=c).elbo)(model, jnp.ones((3, 16)))
    eqns = [e for e in jaxpr.jaxpr.eqns if e.primitive.name in ("dot_general", "conv_general_dilated")]
    return {str(v.aval.dtype) for e in eqns for v in e.invars if v.aval.ndim >= 2 and min(v.aval.shape) > 1}


@pytest.mark.parametrize(
    "settings",
    [
        {"hidden": (8,)},
        {"hidden": (8,), "architecture": "gated", "posterior": "iaf:1"},
        {"hidden": (4,), "architecture": "conv", "prior": "vamp:2"},
        {"hidden": (8,), "latent_dim": 3, "layers": (2, 1)},
        {"hidden": (8,), "latent_dim": 3, "layers": (2, 1), "inference": "bottom-up", "architecture": "gated"},
        {"hidden": (8,), "condition_dim": 3, "prior": "conditional"},
        {"hidden": (4,), "condition_dim": 3, "architecture": "conv", "prior": "vamp:2"},
        {"hidden": (8,), "condition_dim": 3, "latent_dim": 3, "layers": (2, 1), "prior": "mixture:2"},
    ],
)
def test_every_product_of_every_network_part_takes_bf16_inputs(settings):
    """Every matrix product and convolution of the networks (MLP, gated, conv, MADE, the deep models'
    layers, a condition's W_c c and a prior network) has bf16 operands in the ELBO's forward computation."""
    vae = build_model(ModelConfig((4, 4), **{"latent_dim": 2, **settings}), key=KEY)
    assert network_operand_dtypes(with_precision(vae, jnp.bfloat16)) == {"bfloat16"}
    assert network_operand_dtypes(vae) == {"float32"}


def test_a_users_own_module_computes_as_it_is():
    """A user's encoder of Equinox's Linear keeps its fp32 product; the decoder, jaxvae's, goes bf16."""
    vae = build_model(ModelConfig((4, 4), hidden=(8,)), key=KEY)
    own = eqx.tree_at(lambda m: m.encoder, vae, eqx.nn.Linear(16, vae.posterior.size, key=KEY))
    assert network_operand_dtypes(with_precision(own, jnp.bfloat16)) == {"bfloat16", "float32"}


def arrays(shape, low, high):
    return hnp.arrays(np.float32, shape, elements=st.floats(low, high, width=32))


def through_bf16_linear(values: np.ndarray):
    """A bf16 `Linear` whose outputs, on the one-hot inputs e_i, are the rows of `values` (n, m) rounded to
    bf16 (a product with 1 is exact): returns the layer and the one-hot inputs (n, n)."""
    layer = Linear(jnp.asarray(values.T), jnp.zeros(values.shape[1]), jnp.bfloat16)
    return layer, jnp.eye(len(values))


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(st.sampled_from([1, 3]), st.sampled_from([1, 4]), st.sampled_from([1.0, 30.0, 1e4]), st.booleans(), st.data())
def test_bernoulli_guards_hold_for_logits_from_bf16_products(n, d, bound, continuous, data):
    """Logits up to |l| = 1e4 made by a bf16 product: the log-density is finite and agrees with the
    float64 reference at the bf16-rounded logits, and the gradient with respect to the weight is finite and
    bounded by 1 (x - mean), where fp32 products give finite values too."""
    logits = data.draw(arrays((n, d), -bound, bound))
    if continuous:
        x, dist = data.draw(arrays((n, d), 0, 1)), ContinuousBernoulli
    else:
        x, dist = data.draw(hnp.arrays(np.float32, (n, d), elements=st.sampled_from([0.0, 1.0]))), Bernoulli
    layer, onehot = through_bf16_linear(logits)

    def log_p(layer):
        return dist(jax.vmap(layer)(onehot)).log_prob(jnp.asarray(x))

    got = np.asarray(log_p(layer), np.float64)
    l = rounded(logits)
    want = np.sum(x * l - np.logaddexp(0, l), axis=-1)
    if continuous:
        with np.errstate(invalid="ignore", divide="ignore"):
            want = want + np.sum(np.where(l == 0, np.log(2), np.log(l / np.tanh(l / 2))), axis=-1)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(np.asarray(log_p(with_precision(layer, jnp.float32)))))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(l).sum() + 1e-4)
    grad = jax.grad(lambda m: log_p(m).sum())(layer).weight
    assert np.all(np.isfinite(grad)) and np.all(np.abs(grad) <= 1 + 1e-2)


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(st.sampled_from([1, 3]), st.sampled_from([1, 4]), st.data())
def test_normal_guards_hold_for_log_variances_from_bf16_products(n, k, data):
    """Means in +-1e3 and log-variances in +-30 made by a bf16 product: log q matches scipy at the rounded
    parameters, the KL to N(0, I) matches its closed form in float64, and both and their gradients are
    finite."""
    mean, log_var = data.draw(arrays((n, k), -1e3, 1e3)), data.draw(arrays((n, k), -30, 30))
    z = data.draw(arrays((n, k), -1e3, 1e3))
    layer, onehot = through_bf16_linear(np.concatenate([mean, log_var], axis=1))

    def q(layer):
        m, v = jnp.split(jax.vmap(layer)(onehot), 2, axis=-1)
        return Normal(m, v)

    m, v = rounded(mean), rounded(log_var)
    got = np.asarray(q(layer).log_prob(jnp.asarray(z)), np.float64)
    np.testing.assert_allclose(got, stats.norm(m, np.exp(v / 2)).logpdf(z).sum(-1), rtol=1e-5, atol=1e-3)
    standard = Normal(jnp.zeros((n, k)), jnp.zeros((n, k)))
    kl = np.asarray(kl_normal(q(layer), standard), np.float64)
    np.testing.assert_allclose(kl, 0.5 * np.sum(np.exp(v) + m**2 - 1 - v, axis=-1), rtol=1e-5, atol=1e-3)
    grads = jax.grad(lambda l: (q(l).log_prob(jnp.asarray(z)) + kl_normal(q(l), standard)).sum())(layer)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(kl)) and np.all(np.isfinite(grads.weight))


@pytest.mark.slow
def test_bf16_training_reaches_the_fp32_test_elbo_within_the_spread_between_seeds(tmp_path: Path):
    """The seed's model on digits, 5 epochs, seeds 0-2 trained together (`--seeds 3`) in each precision:
    the mean test ELBOs differ by less than the fp32 seeds' standard deviation (measured: 0.0002 nats
    against 0.069), and each bf16 member is within 0.1 nats of the fp32 member of its seed."""
    data = load_dataset("digits")
    elbos = {}
    for precision in ("fp32", "bf16"):
        configs = member_configs(RunConfig(ModelConfig((8, 8)), TrainConfig(epochs=5, precision=precision)), 3, None)
        fit_sweep(configs, data, tmp_path / precision, progress=False)
        elbos[precision] = np.array([read_metrics(tmp_path / precision / n)[-1]["test_elbo"] for n in configs])
        assert RunConfig.load(tmp_path / precision / "seed-0" / "config.json").train.precision == precision
    spread = np.std(elbos["fp32"], ddof=1)
    assert spread > 0.01  # the seeds do differ
    assert abs(elbos["bf16"].mean() - elbos["fp32"].mean()) < spread
    np.testing.assert_allclose(elbos["bf16"], elbos["fp32"], atol=0.1)
