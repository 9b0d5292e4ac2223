"""The networks: gated dense layers and convolutions against NumPy and SciPy transcriptions of the VampPrior
code's, and their init."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import signal

from jaxvae.builder import build_model, build_optimizer
from jaxvae.config import ModelConfig, TrainConfig
from jaxvae.errors import InputError
from jaxvae.networks import GatedConv, GatedMLP, he_linear
from jaxvae.posteriors import DiagonalGaussian


def test_gated_mlp_is_linear_times_sigmoid_gate_layer_by_layer():
    """Each hidden layer is h(x) * sigmoid(g(x)) with no other activation (`utils/nn.py` GatedDense), the
    last a plain linear layer: computed again in float64 NumPy from the module's own weights."""
    net = GatedMLP(7, 3, (5, 4), key=jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(size=7)
    y = x.astype(np.float64)
    for layer in net.layers:
        h = np.asarray(layer.h.weight, np.float64) @ y + np.asarray(layer.h.bias)
        g = np.asarray(layer.g.weight, np.float64) @ y + np.asarray(layer.g.bias)
        y = h / (1 + np.exp(-g))
    y = np.asarray(net.head.weight, np.float64) @ y + np.asarray(net.head.bias)
    np.testing.assert_allclose(net(jnp.asarray(x, jnp.float32)), y, rtol=1e-5, atol=1e-6)


def test_gated_conv_is_convolution_times_sigmoid_gate_with_stride_and_same_padding():
    """`utils/nn.py` GatedConv2d: h(x) * sigmoid(g(x)), each a PyTorch Conv2d (cross-correlation, padding
    kernel // 2) with bias, then strided: computed again in float64 with scipy.signal.correlate from the
    module's own weights, on a (2, 7, 6) input with a 5 x 5 kernel and stride 2 (output (3, 4, 3))."""
    layer = GatedConv(2, 3, 5, 2, key=jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(size=(2, 7, 6))

    def conv(c):
        w, b = np.asarray(c.conv.weight, np.float64), np.asarray(c.conv.bias, np.float64).reshape(-1, 1, 1)
        padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
        full = np.stack([sum(signal.correlate(padded[i], w[o, i], mode="valid") for i in range(2)) for o in range(3)])
        return full[:, ::2, ::2] + b

    expected = conv(layer.h) / (1 + np.exp(-conv(layer.g)))
    assert expected.shape == (3, 4, 3)
    np.testing.assert_allclose(layer(jnp.asarray(x, jnp.float32)), expected, rtol=1e-5, atol=1e-5)


def test_he_init_weights_have_variance_two_over_fan_in():
    """N(0, 2 / in) weights (`utils/nn.py` he_init): the sample variance of 300 x 400 weights within 3%
    (its standard error is sqrt(2 / 120000) = 0.4% of the variance)."""
    layer = he_linear(400, 300, key=jax.random.PRNGKey(1))
    w = np.asarray(layer.weight)
    assert abs(w.mean()) < 3 * np.sqrt(2 / 400 / w.size)
    assert w.var() == pytest.approx(2 / 400, rel=0.03)


def test_gated_architecture_builds_gated_encoder_and_decoder():
    vae = build_model(ModelConfig((6,), latent_dim=2, hidden=(5, 4), architecture="gated"), key=jax.random.PRNGKey(0))
    assert isinstance(vae.encoder, GatedMLP) and isinstance(vae.decoder, GatedMLP)
    assert [l.h.weight.shape[0] for l in vae.decoder.layers] == [4, 5]  # the encoder's widths reversed


def test_log_var_range_clips_the_posterior_log_variance_with_no_gradient_outside():
    """hardtanh(-6, 2) of the log-variance: values outside are clipped and pass no gradient."""
    posterior = DiagonalGaussian(2, (-6.0, 2.0))
    params = jnp.array([0.5, -1.0, 5.0, -9.0])
    np.testing.assert_allclose(posterior(params).log_var, [2.0, -6.0])
    grad = jax.grad(lambda p: jnp.sum(posterior(p).log_var))(jnp.array([0.5, -1.0, 1.0, -9.0]))
    np.testing.assert_allclose(grad, [0, 0, 1, 0])
    with pytest.raises(InputError, match="log_var_range"):
        ModelConfig((6,), posterior="full", log_var_range=(-6.0, 2.0))
    with pytest.raises(InputError, match="LOW < HIGH"):
        ModelConfig((6,), log_var_range=(2.0, -6.0))


def test_adam_normgrad_is_adam_on_gradients_of_unit_norm_per_array():
    """`AdamNormGrad` of the VampPrior code: each array's gradient divided by its norm (+ 1e-7), then
    Adam; the first step of Adam moves every coordinate by lr * sign(g), the next ones are compared
    with optax.adam fed the normalized gradients by hand."""
    params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([[3.0]])}
    grads = [
        {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[-0.5]])},
        {"a": jnp.array([1.0, -1.0]), "b": jnp.array([[2.0]])},
    ]
    mine, reference = build_optimizer(TrainConfig(lr=0.1, optimizer="adam-normgrad")), optax.adam(0.1)
    state, ref_state, p, ref_p = mine.init(params), reference.init(params), params, params
    for g in grads:
        updates, state = mine.update(g, state, p)
        unit = jax.tree.map(lambda a: a / (np.linalg.norm(np.asarray(a)) + 1e-7), g)
        ref_updates, ref_state = reference.update(unit, ref_state, ref_p)
        p, ref_p = optax.apply_updates(p, updates), optax.apply_updates(ref_p, ref_updates)
        jax.tree.map(lambda u, r: np.testing.assert_allclose(u, r, rtol=1e-6), updates, ref_updates)
    with pytest.raises(InputError, match="optimizer must be one of"):
        TrainConfig(optimizer="sgd")
