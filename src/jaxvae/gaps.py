"""The price of amortization: the inference gap split in two per example (Cremer, Li and Duvenaud 2018).

    log p(x) - ELBO(q) = [log p(x) - ELBO(q*)]  +  [ELBO(q*) - ELBO(q)]
                          approximation gap         amortization gap

q is the encoder's q(z|x); q* is the best member of the model's own posterior family for that one x,
found by maximizing the example's ELBO over its own posterior parameters (the vector the encoder
outputs: mean and (co)variance for the Gaussian families; mean, log-variance and context h for the
IAF, whose MADE steps stay shared and fixed), starting from the encoder's output. All values in nats.

For a conditional model and the examples' conditions c, every term is conditioned on c: log p(x | c),
ELBO(q(z | x, c)) and the best q*(z) of the family for the pair (x, c).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from jaxvae.evaluate import in_blocks, iw_key, log_likelihood, log_likelihoods, over_examples
from jaxvae.keys import Evaluation
from jaxvae.model import AmortizedModel
from jaxvae.objectives import elbo

FIT_LR = 3e-2  # Adam's step size on the posterior parameters, at the start
FIT_SAMPLES = 16  # reparameterized draws per step of the ELBO being maximized
FIT_WINDOW = 100  # steps per window of the stopping rule
FIT_TOLERANCE = 0.001  # nats: a window raising the bound by no more than this over the best so far is a plateau
FIT_CHECK_SAMPLES = 100  # fixed draws of the bound checked after each window
FIT_PLATEAUS = 3  # windows without improvement before stopping; the step size halves after each
FIT_MAX_STEPS = 5000
GAP_SAMPLES = 1000  # draws per example of ELBO(q) and ELBO(q*), the same draws for both


def fit_posteriors(
    vae: AmortizedModel,
    x: Array,
    key: Array,
    *,
    lr: float = FIT_LR,
    samples: int = FIT_SAMPLES,
    window: int = FIT_WINDOW,
    tolerance: float = FIT_TOLERANCE,
    max_steps: int = FIT_MAX_STEPS,
    check_samples: int = FIT_CHECK_SAMPLES,
    plateaus: int = FIT_PLATEAUS,
    batch: int = 100,
    progress: bool = False,
    c: Array | None = None,
) -> tuple[Array, Array]:
    """q* for each example of x (n, d) (given its condition, a row of c (n, m), if any): its posterior parameters
    (n, posterior.size) and the Adam steps taken (n,).

    Each example's parameters start at the encoder's output and follow Adam on its own `samples`-draw
    reparameterized ELBO, with step size `lr`. Stopping rule, per example: after every `window` steps the
    bound is computed at `check_samples` draws that are the same at every check (so checks differ by the
    change of q, not by sampling noise); a window that raises it by no more than `tolerance` nats over
    the best check so far is a plateau and halves the step size; the fit stops at the `plateaus`-th
    plateau, or after `max_steps`. On the linear-Gaussian model, from a wrong encoder, this ends within
    0.003 nats of log p(x) (tests/test_gaps.py requires 0.01). Example i draws with fold_in(key, i), so its q* does
    not depend on the others; `batch` examples are fitted at a time (vmapped), so memory does not grow with n,
    one program the host calls per batch (`progress`: a bar on stderr with the time left).
    """
    settings = (lr, samples, window, tolerance, max_steps, check_samples, plateaus)
    return in_blocks(lambda x, i: _fit_batch(vae, x, c, i, key, settings), x, batch, progress, "gaps: fitting q*")


@eqx.filter_jit
def _fit_batch(
    vae: AmortizedModel, x: Array, c: Array | None, i: Array, key: Array, settings: tuple
) -> tuple[Array, Array]:
    """`fit_posteriors` of the examples x[i] (their conditions c[i], or c None) with its settings (lr, samples,
    window, tolerance, max_steps, check_samples, plateaus)."""
    lr, samples, window, tolerance, max_steps, check_samples, plateaus = settings
    optimizer = optax.adam(1.0)  # unit step size: each window scales the updates by its own
    windows = max(1, max_steps // window)

    def fit_one(xi, ci, params, example_key):
        check_key, example_key = jax.random.split(example_key)
        ci = _one(ci)

        def bound(p):  # at the same draws every time: successive values differ by the change of q, not by noise
            return elbo(vae, xi[None], key=check_key, samples=check_samples, params=p[None], c=ci).elbo[0]

        def one_window(carry):
            p, state, best, w, plateaus = carry
            step_size = lr * 0.5**plateaus

            def step(carry, step_key):
                p, state = carry
                grad = jax.grad(
                    lambda p: -elbo(vae, xi[None], key=step_key, samples=samples, params=p[None], c=ci).elbo[0]
                )(p)
                updates, state = optimizer.update(grad, state)
                return (p + step_size * updates, state), None

            (p, state), _ = jax.lax.scan(step, (p, state), jax.random.split(jax.random.fold_in(example_key, w), window))
            value = bound(p)
            return p, state, jnp.maximum(best, value), w + 1, plateaus + (value <= best + tolerance)

        def running(carry):
            return (carry[4] < plateaus) & (carry[3] < windows)

        init = (params, optimizer.init(params), bound(params), 0, 0)
        p, _, _, w, _ = jax.lax.while_loop(running, one_window, init)
        return p, w * window

    xb, cb, keys = x[i], _rows(c, i), jax.vmap(lambda j: jax.random.fold_in(key, j))(i)
    return jax.vmap(fit_one)(xb, cb, vae.posterior_parameters(xb, cb), keys)


def _rows(c: Array | None, i: Array) -> Array | None:
    """The conditions c[i] of the examples i, or None for a model without one."""
    return None if c is None else c[i]


def _one(ci: Array | None) -> Array | None:
    """One example's condition ci (m,) as a batch of one (1, m), or None."""
    return None if ci is None else ci[None]


def paired_elbos(
    vae: AmortizedModel,
    x: Array,
    params: Array,
    key: Array,
    *,
    samples: int = GAP_SAMPLES,
    batch: int = 10,
    progress: bool = False,
    c: Array | None = None,
):
    """ELBO(q) and ELBO(q*) per example of x (n, d) (given the conditions c (n, m), if any) from the same
    `samples` draws of the base noise (common random numbers, which shrink the Monte Carlo error of their
    difference): q the encoder's, q* the family at `params` (n, P). Example i draws with fold_in(key, i).
    Returns a dict of (n,) arrays, nats: elbo, elbo_optimized, amortization_gap and the standard error of each
    Monte Carlo mean, `_se` (sd of the draws / sqrt(samples)). `batch` examples at a time, PAIRED_BLOCK batches
    per program the host calls (`progress`: a bar on stderr with the time left)."""

    def block(x, i):
        return _paired_elbos_block(vae, x, c, params, key, i, samples, batch)

    mean, se = in_blocks(block, x, batch * PAIRED_BLOCK, progress, "gaps: ELBO(q) and ELBO(q*)")
    names = ("elbo", "elbo_optimized", "amortization_gap")
    return {n: mean[:, j] for j, n in enumerate(names)} | {n + "_se": se[:, j] for j, n in enumerate(names)}


PAIRED_BLOCK = 10  # batches of `paired_elbos` per program


@eqx.filter_jit
def _paired_elbos_block(
    vae: AmortizedModel, x: Array, c: Array | None, params: Array, key: Array, i: Array, samples: int, batch: int
):
    """`paired_elbos`'s means and standard errors (each (b, 3): q, q*, q* - q) of the examples x[i] (b,), given
    their conditions c[i] (or c None)."""

    def one_example(xi, ci, pair, example_key):
        keys = jax.random.split(example_key, samples)  # the same draws for q and q*
        ci = _one(ci)

        def draw(k):
            return jnp.stack([elbo(vae, xi[None], key=k, params=p[None], c=ci).elbo[0] for p in pair])

        draws = jax.vmap(draw)(keys)
        draws = jnp.concatenate([draws, draws[:, 1:] - draws[:, :1]], axis=1)  # q, q*, q* - q
        return jnp.mean(draws, axis=0), jnp.std(draws, axis=0, ddof=1) / math.sqrt(samples)

    def one_batch(xb, i):
        cb = _rows(c, i)
        pairs = jnp.stack([vae.posterior_parameters(xb, cb), params[i]], axis=1)  # (b, 2, P)
        return jax.vmap(one_example)(xb, cb, pairs, jax.vmap(lambda j: jax.random.fold_in(key, j))(i))

    return over_examples(one_batch, x, batch, i)


def inference_gaps(
    vae: AmortizedModel,
    x: Array,
    key: Array,
    *,
    iw_samples: int = 5000,
    likelihoods: dict | None = None,
    progress: bool = False,
    c: Array | None = None,
) -> dict[str, np.ndarray]:
    """Per-example arrays (n,), nats, for x (n, d) (and their conditions c (n, m) of a conditional model, each
    value then of x given c): `elbo` (q), `elbo_optimized` (q*), `amortization_gap`,
    each with its Monte Carlo `_se` (1000 common draws, `paired_elbos`); `log_likelihood` and
    `log_likelihood_optimized`, L_K with K = iw_samples and q or q* as the proposal; `log_likelihood_quadrature`
    for latent dimension <= 2; `log_px`, the reference for log p(x): the quadrature where there is one,
    else the larger of the two L_K; `approximation_gap` = log_px - elbo_optimized; `steps` of the fit of q*.

    `log_likelihood` and the quadrature are `evaluate.log_likelihoods`'s (`likelihoods`, when the caller has
    them already, as `evaluate.report` uses them too); L_K with q* uses the same draws of the base noise.
    `progress`: a bar on stderr, with the time left, for each computation.
    """
    x = jnp.asarray(x, jnp.float32)
    fit_key, elbo_key = jax.random.split(jax.random.fold_in(key, Evaluation.GAPS))
    params, steps = fit_posteriors(vae, x, fit_key, progress=progress, c=c)
    out = paired_elbos(vae, x, params, elbo_key, progress=progress, c=c)
    out |= likelihoods or log_likelihoods(vae, x, key, iw_samples, progress=progress, c=c)
    out["log_likelihood_optimized"] = log_likelihood(
        vae, x, iw_key(key), samples=iw_samples, params=params, progress=progress, c=c
    )
    if "log_likelihood_quadrature" in out:
        out["log_px"] = out["log_likelihood_quadrature"]
    else:
        out["log_px"] = jnp.maximum(out["log_likelihood"], out["log_likelihood_optimized"])
    out["approximation_gap"] = out["log_px"] - out["elbo_optimized"]
    out["steps"] = steps
    return {name: np.asarray(value) for name, value in out.items()}


def log_px_reference(latent_dim: int) -> str:
    """What `inference_gaps` takes as log p(x) for a model of this latent dimension."""
    return "quadrature" if latent_dim <= 2 else "max of L_K with q and with q* as proposals"


def summary(gaps: dict[str, np.ndarray], latent_dim: int) -> dict:
    """Means over examples of `inference_gaps`'s arrays for evaluate's report (JSON-ready): elbo_optimized,
    amortization_gap, approximation_gap, log_likelihood_optimized, and what was taken as log p(x);
    `_se`: the Monte Carlo standard error of each mean (not the spread over examples); for the approximation
    gap only against the quadrature, as an importance-weighted log p(x) has its own, unknown, bias."""
    n = len(gaps["elbo"])
    se = {
        name: float(np.sqrt(np.sum(gaps[name + "_se"].astype(np.float64) ** 2)) / n)
        for name in ("elbo_optimized", "amortization_gap")
    }
    return {
        "elbo_optimized": float(np.mean(gaps["elbo_optimized"])),
        "elbo_optimized_se": se["elbo_optimized"],
        "amortization_gap": float(np.mean(gaps["amortization_gap"])),
        "amortization_gap_se": se["amortization_gap"],
        "approximation_gap": float(np.mean(gaps["approximation_gap"])),
        **({"approximation_gap_se": se["elbo_optimized"]} if latent_dim <= 2 else {}),
        "log_likelihood_optimized": float(np.mean(gaps["log_likelihood_optimized"])),
        "gaps_log_px": log_px_reference(latent_dim),
        "gaps_elbo_samples": GAP_SAMPLES,
    }
