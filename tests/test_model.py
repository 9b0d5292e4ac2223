"""The VAE's likelihoods and architectures: densities against scipy, shapes, and what is trained."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxvae.builder import build_model
from jaxvae.config import ModelConfig
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


@pytest.mark.slow
def test_fixed_variance_gets_no_gradient_and_learned_ones_do():
    x = jnp.asarray(rng.normal(size=(3, 12)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
    for variance, trained in [("fixed", False), ("learned-shared", True), ("learned-pixel", True)]:
        grad = jax.grad(lambda v: v.decode(z).log_prob(x).sum())(gaussian_vae(variance, std=0.5))
        assert bool(jnp.any(grad.likelihood.log_var != 0)) == trained, variance


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "gaussian"])
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_every_likelihood_and_architecture_encodes_decodes_and_samples(likelihood, architecture):
    """Shapes through the model; samples lie in the likelihood's support; log_prob is finite."""
    config = ModelConfig(
        data_shape=(8, 8), latent_dim=3, hidden=(4, 6), likelihood=likelihood, architecture=architecture
    )
    vae = build_model(config, key=jax.random.PRNGKey(1))
    x = jnp.asarray(rng.random((5, 64)), jnp.float32)
    q = vae.encode(x)
    assert q.mean.shape == q.std.shape == (5, 3)
    p = vae.decode(q.sample(jax.random.PRNGKey(2), (2,)))  # leading sample axis kept
    assert p.mean.shape == (2, 5, 64) and p.log_prob(x).shape == (2, 5)
    assert bool(jnp.all(jnp.isfinite(p.log_prob(x))))
    draws = np.asarray(p.sample(jax.random.PRNGKey(3)))
    assert draws.shape == (2, 5, 64)
    if likelihood == "bernoulli":
        assert set(np.unique(draws)) <= {0.0, 1.0}
    elif likelihood == "continuous-bernoulli":
        assert draws.min() >= 0 and draws.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(8, 8), (28, 28), (32, 32, 3), (7, 5)])
def test_conv_networks_fit_every_image_size(shape):
    config = ModelConfig(data_shape=shape, latent_dim=4, hidden=(3, 5), likelihood="gaussian", architecture="conv")
    vae = build_model(config, key=jax.random.PRNGKey(0))
    x = jnp.zeros((2, config.data_dim))
    assert vae.encode(x).mean.shape == (2, 4) and vae.decode(jnp.zeros((2, 4))).mean.shape == (2, config.data_dim)


@pytest.mark.slow
def test_conv_networks_read_and_write_flat_vectors_as_height_width_channels():
    """One 3x3 stride-2 convolution and an identity linear layer: feature (channel o, row p, column q)
    and the pixel (row i, column j, channel c) at flat index (i W + j) C + c interact only where
    |2p - i| <= 1 and |2q - j| <= 1, in the encoder and in the decoder. A layout mistake (reading the
    vector as (C, H, W), or writing it so) breaks this locality."""
    from jaxvae.networks import ConvDecoder, ConvEncoder

    h, w, c, o = 6, 4, 3, 2
    features = o * 3 * 2  # (o, 3, 2): 6 x 4 halved
    identity = (jnp.eye(features), jnp.zeros(features))
    enc = ConvEncoder((h, w, c), features, (o,), "tanh", key=jax.random.PRNGKey(0))
    enc = eqx.tree_at(lambda e: (e.head.weight, e.head.bias), enc, identity)
    dec = ConvDecoder(features, (h, w, c), (o,), "tanh", key=jax.random.PRNGKey(1))
    dec = eqx.tree_at(lambda e: (e.head.weight, e.head.bias), dec, identity)
    enc_jac = np.asarray(jax.jacobian(enc)(jnp.asarray(rng.random(h * w * c), jnp.float32)))
    dec_jac = np.asarray(jax.jacobian(dec)(jnp.asarray(rng.random(features), jnp.float32)))
    enc_depends = np.any(enc_jac.reshape(o, 3, 2, h, w, c) != 0, axis=(0, 5))  # (p, q, i, j)
    dec_depends = np.any(dec_jac.reshape(h, w, c, o, 3, 2) != 0, axis=(2, 3)).transpose(2, 3, 0, 1)
    p, q, i, j = np.ix_(range(3), range(2), range(h), range(w))
    near = (np.abs(2 * p - i) <= 1) & (np.abs(2 * q - j) <= 1)
    np.testing.assert_array_equal(enc_depends, near)
    np.testing.assert_array_equal(dec_depends, near)


def test_conv_needs_images():
    with pytest.raises(InputError, match="conv needs images"):
        ModelConfig(data_shape=(10,), architecture="conv")


def test_the_activation_names_of_the_options_are_the_networks_functions():
    from jaxvae.config import ACTIVATIONS
    from jaxvae.networks import ACTIVATION_FUNCTIONS

    assert tuple(ACTIVATION_FUNCTIONS) == ACTIVATIONS
