"""benchmarks/kingma_optimizer.py's optimizers against Kingma et al.'s code: their Adam (`adam.py`'s loop
written out in NumPy) and their weight prior's gradient, w / N on the weight matrices only."""

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax

_path = Path(__file__).parents[1] / "benchmarks" / "kingma_optimizer.py"
_spec = importlib.util.spec_from_file_location("kingma_optimizer", _path)
assert _spec is not None and _spec.loader is not None
kingma_optimizer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kingma_optimizer)


def adam_py(w, gradients, alpha=3e-4, beta1=0.9, beta2=0.999):
    """`AdaM.optim_minibatch` of nips14-ssl's adam.py, one array, for the gradients in turn."""
    w, m1, m2 = w.copy(), np.zeros_like(w), np.zeros_like(w)
    for g in gradients:
        m1 += (1 - beta1) * (g - m1)
        m2 += (1 - beta2) * (g**2 - m2)
        w -= alpha * m1 / np.sqrt(m2)
    return w


def test_their_adam_steps_as_adam_py_without_bias_correction():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3))
    gradients = rng.normal(size=(50, 4, 3))
    optimizer = kingma_optimizer.their_adam(3e-4)
    params = jnp.asarray(w)
    state = optimizer.init(params)
    for g in gradients:
        updates, state = optimizer.update(jnp.asarray(g), state)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params), adam_py(w, gradients), rtol=0, atol=1e-6)
    # the first step is lr * 0.1 / sqrt(0.001) = 3.16 lr a coordinate, where Optax's Adam steps lr
    first, _ = optimizer.update(jnp.asarray(gradients[0]), optimizer.init(jnp.asarray(w)))
    np.testing.assert_allclose(np.abs(np.asarray(first)), 3e-4 * 0.1 / np.sqrt(0.001), rtol=1e-5)


def test_their_adam_leaves_a_parameter_with_no_gradient_where_it_is():
    optimizer = kingma_optimizer.their_adam(3e-4)
    params = jnp.ones(3)
    updates, _ = optimizer.update(jnp.zeros(3), optimizer.init(params))
    np.testing.assert_array_equal(np.asarray(updates), 0.0)


def test_the_prior_adds_w_over_n_to_the_gradient_of_the_weight_matrices_only():
    # the bound's gradient 0, so that the step is the prior's alone: the weights move, the rest does not
    params = {"w": jnp.arange(1.0, 7.0).reshape(2, 3), "b": jnp.arange(1.0, 4.0), "log_var": jnp.float32(2.0)}
    grads = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3), "log_var": jnp.float32(0.0)}
    optimizer = kingma_optimizer.their_optimization("prior", 60_000, 3e-4)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    with_prior = {"w": grads["w"] + params["w"] / 60_000, "b": grads["b"], "log_var": grads["log_var"]}
    adam = optax.adam(3e-4)
    expected, _ = adam.update(with_prior, adam.init(params))
    for name in params:
        np.testing.assert_allclose(np.asarray(updates[name]), np.asarray(expected[name]), rtol=1e-6, atol=0)
    assert np.all(np.asarray(updates["w"]) < -2e-4) and not np.any(updates["b"]) and not updates["log_var"]
