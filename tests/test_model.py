"""The VAE's likelihoods and architectures: densities against scipy, shapes, and what is trained."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxvae.builder import build_model
from jaxvae.config import ACTIVATIONS, ModelConfig
from jaxvae.errors import InputError
from jaxvae.model import VAE
from jaxvae.networks import map_examples

rng = np.random.default_rng(0)


def gaussian_vae(variance: str, std: float = 1.0, shape=(4, 3), architecture="mlp") -> VAE:
    config = ModelConfig(
        data_shape=shape,
        latent_dim=2,
        hidden=(5,),
        likelihood="gaussian",
        architecture=architecture,
        gaussian_variance=variance,
        gaussian_std=std,
    )
    return build_model(config, key=jax.random.PRNGKey(0))


@pytest.mark.parametrize("variance", ["learned-shared", "learned-pixel", "fixed"])
def test_gaussian_likelihood_matches_scipy(variance):
    """log p(x|z) = sum of scipy's normal log-densities with the decoder's output as the mean and the
    variance the option says: exp(pixel_log_var) for all pixels, per pixel, or gaussian_std**2."""
    vae = gaussian_vae(variance, std=0.3)
    d = 12
    assert vae.likelihood.log_var.shape == ((d,) if variance == "learned-pixel" else ())
    np.testing.assert_allclose(vae.likelihood.log_var, 2 * np.log(0.3), rtol=1e-6)  # where it starts
    if variance != "fixed":  # as if trained: a different value, per pixel when it is per pixel
        trained = jnp.asarray(rng.normal(size=vae.likelihood.log_var.shape))
        vae = eqx.tree_at(lambda m: m.likelihood.log_var, vae, trained)
    z, x = rng.normal(size=(6, 2)), rng.normal(size=(6, d))
    mean = np.asarray(map_examples(vae.decoder, jnp.asarray(z, jnp.float32)))
    std = np.exp(0.5 * np.asarray(vae.likelihood.log_var, np.float64))
    expected = stats.norm(mean, std).logpdf(x).sum(-1)
    got = vae.decode(jnp.asarray(z, jnp.float32)).log_prob(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("layers", [(), (2, 2)])
def test_network_variance_matches_scipy_per_pixel_and_example(layers):
    """With `network` the decoder outputs (2d,) per z, [mean, log_var - 2 log gaussian_std]: log p(x|z) is
    scipy's normal log-densities with that mean and variance, different for each pixel and example. A deep
    model's decoder is built the same way."""
    config = ModelConfig(
        data_shape=(4, 3),
        latent_dim=sum(layers) or 2,
        hidden=(5,),
        likelihood="gaussian",
        gaussian_variance="network",
        gaussian_std=0.3,
        layers=layers,
    )
    vae, d = build_model(config, key=jax.random.PRNGKey(0)), 12
    z, x = rng.normal(size=(6, 2)), rng.normal(size=(6, d))
    out = np.asarray(map_examples(vae.decoder, jnp.asarray(z, jnp.float32)), np.float64)
    assert out.shape == (6, 2 * d)
    mean, log_var = out[:, :d], out[:, d:] + 2 * np.log(0.3)
    assert np.std(log_var, axis=0).min() > 0 and np.std(log_var, axis=1).min() > 0
    expected = stats.norm(mean, np.exp(0.5 * log_var)).logpdf(x).sum(-1)
    got = vae.likelihood(jnp.asarray(out, jnp.float32)).log_prob(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    if not layers:
        np.testing.assert_allclose(vae.decode(jnp.asarray(z, jnp.float32)).log_prob(x), expected, rtol=1e-5)


@pytest.mark.slow
def test_fixed_variance_gets_no_gradient_and_learned_ones_do():
    x = jnp.asarray(rng.normal(size=(3, 12)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
    for variance, trained in [("fixed", False), ("learned-shared", True), ("learned-pixel", True)]:
        grad = jax.grad(lambda v: v.decode(z).log_prob(x).sum())(gaussian_vae(variance, std=0.5))
        assert bool(jnp.any(grad.likelihood.log_var != 0)) == trained, variance


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli"])
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_pixel_likelihoods_score_the_decoders_logits_as_scipy_does(likelihood, architecture):
    """log p(x|z) for z of shape (2, 5, k) (a leading sample axis kept): the sum over pixels of SciPy's
    Bernoulli log-pmf with p = sigmoid(logits), or for the continuous Bernoulli (Loaiza-Ganem and Cunningham
    2019) the same plus log C(p), C(p) = 2 artanh(1 - 2p) / (1 - 2p), in float64 from the decoder's outputs;
    draws lie in {0, 1} or [0, 1]."""
    config = ModelConfig(
        data_shape=(8, 8), latent_dim=3, hidden=(4, 6), likelihood=likelihood, architecture=architecture
    )
    vae = build_model(config, key=jax.random.PRNGKey(1))
    z = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    x = rng.random((5, 64)).round() if likelihood == "bernoulli" else rng.random((5, 64))
    p = 1 / (1 + np.exp(-np.asarray(map_examples(vae.decoder, z), np.float64)))
    expected = np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=-1)
    if likelihood == "continuous-bernoulli":
        expected += np.sum(np.log(2 * np.arctanh(1 - 2 * p) / (1 - 2 * p)), axis=-1)
    else:
        np.testing.assert_allclose(expected, stats.bernoulli(p).logpmf(x).sum(-1), rtol=1e-12)
    got = vae.decode(z).log_prob(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    draws = np.asarray(vae.decode(z).sample(jax.random.PRNGKey(3)))
    assert set(np.unique(draws)) <= {0.0, 1.0} if likelihood == "bernoulli" else 0 <= draws.min() <= draws.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("h, w, c", [(6, 4, 3), (7, 5, 1)])
def test_conv_networks_read_and_write_flat_vectors_as_height_width_channels(h, w, c):
    """One 3x3 stride-2 convolution and an identity linear layer: feature (channel o, row p, column q)
    and the pixel (row i, column j, channel c) at flat index (i W + j) C + c interact only where
    |2p - i| <= 1 and |2q - j| <= 1, in the encoder and in the decoder, for even and odd sizes (the
    decoder's output then has the image's size exactly). A layout mistake (reading the vector as (C, H, W),
    or writing it so) breaks this locality."""
    from jaxvae.networks import ConvDecoder, ConvEncoder

    o, hp, wp = 2, -(-h // 2), -(-w // 2)
    features = o * hp * wp  # (o, hp, wp): the image halved, rounded up
    identity = (jnp.eye(features), jnp.zeros(features))
    enc = ConvEncoder((h, w, c), features, (o,), jax.nn.tanh, key=jax.random.PRNGKey(0))
    enc = eqx.tree_at(lambda e: (e.head.weight, e.head.bias), enc, identity)
    dec = ConvDecoder(features, (h, w, c), (o,), jax.nn.tanh, key=jax.random.PRNGKey(1))
    dec = eqx.tree_at(lambda e: (e.head.weight, e.head.bias), dec, identity)
    enc_jac = np.asarray(jax.jacobian(enc)(jnp.asarray(rng.random(h * w * c), jnp.float32)))
    dec_jac = np.asarray(jax.jacobian(dec)(jnp.asarray(rng.random(features), jnp.float32)))
    assert dec_jac.shape == (h * w * c, features)
    enc_depends = np.any(enc_jac.reshape(o, hp, wp, h, w, c) != 0, axis=(0, 5))  # (p, q, i, j)
    dec_depends = np.any(dec_jac.reshape(h, w, c, o, hp, wp) != 0, axis=(2, 3)).transpose(2, 3, 0, 1)
    p, q, i, j = np.ix_(range(hp), range(wp), range(h), range(w))
    near = (np.abs(2 * p - i) <= 1) & (np.abs(2 * q - j) <= 1)
    np.testing.assert_array_equal(enc_depends, near)
    np.testing.assert_array_equal(dec_depends, near)


def test_conv_needs_images():
    with pytest.raises(InputError, match="conv needs images"):
        ModelConfig(data_shape=(10,), architecture="conv")


ACTIVATIONS_IN_NUMPY = {  # the functions the names stand for, written out (gelu: the tanh approximation)
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
    "elu": lambda a: np.where(a > 0, a, np.expm1(a)),
    "gelu": lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))),
    "softplus": lambda a: np.logaddexp(0, a),
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "silu": lambda a: a / (1 + np.exp(-a)),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_each_activation_option_computes_its_function_in_the_mlp(name):
    """`--activation NAME`'s decoder against a float64 NumPy forward pass of its own weights, the activation
    written out: W_2 f(W_1 z + b_1) + b_2, at inputs spanning the functions' curved parts."""
    vae = build_model(ModelConfig((6,), latent_dim=3, hidden=(5,), activation=name), key=jax.random.PRNGKey(2))
    z = rng.normal(size=(7, 3)) * 2
    (w1, b1), (w2, b2) = (
        (np.asarray(l.weight, np.float64), np.asarray(l.bias, np.float64)) for l in vae.decoder.layers
    )
    expected = ACTIVATIONS_IN_NUMPY[name](z @ w1.T + b1) @ w2.T + b2
    np.testing.assert_allclose(map_examples(vae.decoder, jnp.asarray(z, jnp.float32)), expected, rtol=1e-5, atol=1e-5)
