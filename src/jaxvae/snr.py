"""The signal-to-noise ratio of training gradients (Rainforth et al. 2018, "Tighter variational bounds are
not necessarily better"): SNR_i = |E[g_i]| / std(g_i) of each gradient component g_i over repeated draws
on one fixed batch, summarized over the encoder's components and over the decoder's (mean and median).

Under IWAE's standard gradient the encoder's SNR falls like 1/sqrt(K) as K grows while the decoder's rises
like sqrt(K); Tucker et al. (2018) report DReG's encoder SNR rising with K. A component without signal reads
about sqrt(2 / (pi R)) from R draws (0.08 for R = 100).

For a conditional model the batch's conditions c go with it into every draw; the encoder's components are
then those of q(z | x, c) (its condition's weights among them), and a prior network p(z | c) is on the
decoder's side, with the rest of the generative model.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from jaxvae.builder import GRADIENTS
from jaxvae.model import LatentModel
from jaxvae.objectives import Iwae, Objective

REPETITIONS = 100  # draws of the gradient per estimate
BATCHES = 10  # the repetitions are split into this many batches; their spread gives the Monte Carlo error


def inference_mask(vae: LatentModel, x: Array, c: Array | None = None):
    """For each float array of `vae` (as `eqx.filter(vae, eqx.is_inexact_array)` lays them out), True where
    q(z|x) (q(z|x, c) with the conditions c (n, m)) depends on it: the derivative of a random projection of the
    arrays of `vae.encode(x, c)` is not zero there. The others (decoder, likelihood, prior; a VampPrior's
    pseudo-inputs, a prior network) are the decoder's side."""
    return jax.tree.map(bool, _depends(vae, x, c))


@eqx.filter_jit
def _depends(vae: LatentModel, x: Array, c: Array | None):
    """Whether each float array of `vae` has a nonzero derivative of a random projection of q(z|x, c)'s arrays."""
    params, static = eqx.partition(vae, eqx.is_inexact_array)

    def projection(p):
        arrays = jax.tree.leaves(eqx.filter(eqx.combine(p, static).encode(x, c), eqx.is_inexact_array))
        keys = jax.random.split(jax.random.PRNGKey(0), len(arrays))
        return sum(jnp.vdot(jax.random.normal(k, a.shape), a) for k, a in zip(keys, arrays, strict=True))

    return jax.tree.map(lambda g: jnp.any(g != 0), jax.grad(projection)(params))


def gradient_snr(
    vae: LatentModel,
    x: Array,
    key: Array,
    objective: Objective,
    *,
    repetitions: int = REPETITIONS,
    bar: tqdm | None = None,
    c: Array | None = None,
) -> dict:
    """SNR of `objective`'s gradient on the batch x (n, d) (with its conditions c (n, m), if any), from
    `repetitions` draws (a multiple of BATCHES).

    Returns, for `encoder` and `decoder` (see `inference_mask`): the mean over components of SNR_i, and
    with the suffixes `_median` its median, `_se` and `_median_se` their Monte Carlo standard errors (the
    spread of the BATCHES batches' estimates over sqrt(BATCHES)). Components whose gradient is the same at
    every draw (std 0) are left out; `encoder_components` and `decoder_components` count those kept.
    The host calls one program per batch of draws; `bar`, a progress bar, advances by one after each.
    """
    params, static = eqx.partition(vae, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    mask = jax.tree.map(lambda m, p: jnp.full(p.shape, m), inference_mask(vae, x, c), params)
    encoder = np.asarray(ravel_pytree(mask)[0])
    shift, sums, squares = _moments(flat, unravel, static, x, c, key, objective, repetitions, bar)
    batch_snr = _snr(shift, sums, squares, repetitions // BATCHES)  # (BATCHES, P)
    snr = _snr(shift, sums.sum(0), squares.sum(0), repetitions)  # (P,)
    out = {}
    for side, mask in (("encoder", encoder), ("decoder", ~encoder)):
        kept = mask & np.isfinite(snr)
        for suffix, summary in (("", np.mean), ("_median", np.median)):
            batches = [summary(b[mask & np.isfinite(b)]) for b in batch_snr]
            out[side + suffix] = float(summary(snr[kept]))
            out[f"{side}{suffix}_se"] = float(np.std(batches, ddof=1) / math.sqrt(BATCHES))
        out[f"{side}_components"] = int(kept.sum())
    return out


def _moments(flat, unravel, static, x, c, key, objective, repetitions, bar):
    """(g_0 (P,), the sums of g - g_0 and of its square over each batch of draws (BATCHES, P)) of the gradient on
    the batch x and its conditions c (or None), float64: g_0, a
    draw with another key, shifts the sums so that a small variance is not lost to rounding. One program per
    batch of draws, `bar` (or None) advanced after each."""
    weights = jnp.ones(x.shape[0])

    def grad(k):
        return jax.grad(lambda f: objective(eqx.combine(unravel(f), static), x, weights, key=k, c=c)[0])(flat)

    @jax.jit
    def batch(shift, batch_keys):
        def body(carry, k):
            g = grad(k) - shift
            return (carry[0] + g, carry[1] + g * g), None

        zeros = jnp.zeros_like(flat)
        return jax.lax.scan(body, (zeros, zeros), batch_keys)[0]

    shift = jax.jit(grad)(jax.random.fold_in(key, repetitions))
    sums, squares = [], []
    for batch_keys in jax.random.split(key, repetitions).reshape(BATCHES, -1, 2):
        batch_sums, batch_squares = batch(shift, batch_keys)
        sums.append(np.asarray(batch_sums, np.float64))  # waits for the batch
        squares.append(np.asarray(batch_squares, np.float64))
        if bar is not None:
            bar.update(1)
    return np.asarray(shift, np.float64), np.stack(sums), np.stack(squares)


def _snr(shift, sums, squares, count):
    """|mean| / std (unbiased variance) from the shifted sums over `count` draws; inf or nan where the std is 0."""
    mean = shift + sums / count
    variance = np.maximum(squares - sums**2 / count, 0) / (count - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(mean) / np.sqrt(variance)


def snr_table(
    vae: LatentModel,
    x: Array,
    key: Array,
    ks: tuple[int, ...],
    *,
    repetitions: int = REPETITIONS,
    progress: bool = False,
    c: Array | None = None,
) -> dict:
    """`gradient_snr` of IWAE with K draws for every K of `ks` and every gradient estimator on the batch x
    (n, d) (its conditions c (n, m), if any), the same draws for each: estimator name -> K -> the summary.
    `progress`: a bar on stderr with the time left."""
    total = len(GRADIENTS) * len(ks) * BATCHES
    with tqdm(total=total, desc="gradient SNR", unit="batch", disable=not progress, leave=False) as bar:
        return {
            name: {k: gradient_snr(vae, x, key, Iwae(k, gradient()), repetitions=repetitions, bar=bar, c=c) for k in ks}
            for name, gradient in GRADIENTS.items()
        }
