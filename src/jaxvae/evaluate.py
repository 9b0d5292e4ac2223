"""Held-out evaluation in nats: ELBO, importance-weighted log-likelihood, quadrature, diagnostics.

Every function is jitted and works through the data `batch` examples (and K samples `chunk` at a time),
so memory stays bounded whatever n or K. Per-example functions return shape (n,); `report` gives means.
"""

import functools
import math
import operator
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from tqdm.auto import tqdm

from jaxvae import looping
from jaxvae.distributions import CLOSED_FORM_KL, ClassMixture, Distribution, FullNormal, Mixture, Normal, kl_terms
from jaxvae.errors import InputError
from jaxvae.keys import MOMENTS_SEED, Evaluation
from jaxvae.looping import Loop, batch_indices
from jaxvae.model import LatentModel
from jaxvae.objectives import Objective, elbo, log_importance_weights

ACTIVE_THRESHOLD = 0.01  # a unit is active when Var_x E[z|x] exceeds this (Burda et al. 2015)
ELBO_SAMPLES = 100  # samples per example of the ELBO in `report`: its Monte Carlo error is then negligible


def mean_elbo(
    vae: LatentModel, x: Array, key: Array, *, samples: int = 1, chunk: int = 1000, c: Array | None = None
) -> dict[str, Array]:
    """Means over the n examples of x (n, d) (with a conditional model's conditions c (n, m)) of the ELBO and
    its two terms, `chunk` examples at a time; for a deep model also the KL of each layer (`kl_layer_1`, ...,
    from the bottom; see `layer_kls`)."""
    return _chunk_means(_elbo_sums, (vae, samples), (x, c), key, chunk)


def mean_bounds(
    vae: LatentModel, objective: Objective, x: Array, key: Array, *, chunk: int = 1000, c: Array | None = None
) -> dict[str, Array]:
    """Means over the n examples of x (n, d) (with a conditional model's conditions c (n, m)) of the bounds
    `objective` reports (`elbo`, `iwae_bound`, ...; each at beta 1), `chunk` examples at a time."""
    return _chunk_means(_bound_sums, (vae, objective), (x, c), key, chunk)


@eqx.filter_jit
def _elbo_sums(vae: LatentModel, samples: int, data: tuple, w: Array, key: Array) -> dict[str, Array]:
    """`mean_elbo`'s sums over a chunk data = (x (b, d), c (b, m) or None) weighted by w (b,)."""
    x, c = data
    sums = {name: jnp.sum(w * t) for name, t in elbo(vae, x, key=key, samples=samples, c=c)._asdict().items()}
    if len(vae.sizes) > 1:
        kls = w @ layer_kls(vae, x, jax.random.fold_in(key, 1), samples, c)
        sums |= {f"kl_layer_{l + 1}": kls[l] for l in range(len(vae.sizes))}
    return sums


@eqx.filter_jit
def _bound_sums(vae: LatentModel, objective: Objective, data: tuple, w: Array, key: Array) -> dict[str, Array]:
    """`mean_bounds`'s sums over a chunk data = (x (b, d), c (b, m) or None) weighted by w (b,)."""
    x, c = data
    return {name: jnp.sum(w * b) for name, b in objective(vae, x, w, key=key, c=c)[1].items()}


def _chunk_means(sums, args: tuple, data: tuple, key: Array, chunk: int) -> dict[str, Array]:
    """Means over the n examples of data = (x (n, d), c (n, m) or None) of the values that
    `sums(*args, data_chunk, weights, chunk_key)` sums over a chunk (a dict of scalars; padding has weight 0),
    `chunk` examples at a time, each chunk's key one of `key`'s splits, looped as the model's (args[0]) loops
    are (`looping.for_model`)."""
    n = data[0].shape[0]
    idx, weights = batch_indices(jnp.arange(n), min(chunk, n))
    keys = jax.random.split(key, idx.shape[0])
    return _means(looping.for_model(args[0]), sums, args, data, idx, weights, keys)


@looping.program
def _means(loop, sums, args, data, idx, weights, keys):
    """`_chunk_means` as a program for a loop strategy."""
    totals = loop.map(_chunk_sums, (idx, weights, keys), sums, args, data)
    return {name: jnp.sum(t) / data[0].shape[0] for name, t in totals.items()}


def _chunk_sums(chunk, sums, args, data):
    """The sums of one chunk = (indices, weights, key) of data = (x, c or None)."""
    i, w, k = chunk
    return sums(*args, jax.tree.map(lambda a: a[i], data), w, k)


def layer_kls(vae: LatentModel, x: Array, key: Array, samples: int = 1, c: Array | None = None) -> Array:
    """The KL of each latent layer for x (n, d) (and their conditions c (n, m), if any), shape (n, L), nats: a
    one-layer model's whole KL; a deep model's per layer as `Layered.kl_layers` defines it (closed form given
    the draws where it can be), averaged over `samples` draws z ~ q(z|x)."""
    q, p = vae.encode(x, c), vae.prior(c)
    z, log_q = q.sample_and_log_prob(key, (samples,))
    terms = kl_terms(q, p, z, log_q)
    return terms if len(vae.sizes) > 1 else jnp.sum(terms, axis=-1, keepdims=True)


@eqx.filter_jit
def mean_layer_kls(
    vae: LatentModel, x: Array, key: Array, *, samples: int, batch: int = 100, c: Array | None = None
) -> Array:
    """The mean over the examples of x (n, d) (conditions c (n, m), if any) of `layer_kls`, shape (L,), `batch`
    examples at a time."""

    def kls_of(xb, i):
        return layer_kls(vae, xb, jax.random.fold_in(key, i[0]), samples, None if c is None else c[i])

    kls = over_examples(kls_of, x, batch)
    return jnp.mean(kls, axis=0)


def over_examples(fn, x: Array | np.ndarray, batch: int, examples: Array | None = None):
    """fn(x[i], i) over the examples of x (n, d), or those of `examples` (m,) (indices into x), `batch` at a
    time in a compiled loop (`lax.map`); outputs keep the leading n (m)."""
    examples = jnp.arange(x.shape[0]) if examples is None else examples
    m = examples.shape[0]
    idx, _ = batch_indices(examples, min(batch, m))  # the last batch is padded with example 0
    out = jax.lax.map(lambda i: fn(x[i], i), idx)
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:m], out)


def log_likelihood(
    vae: LatentModel,
    x: Array,
    key: Array,
    *,
    samples: int = 5000,
    chunk: int = 500,
    batch: int = 20,
    params: Array | None = None,
    progress: bool = False,
    loop: Loop | None = None,
    c: Array | None = None,
) -> Array:
    """Importance-weighted bound L_K(x) = logsumexp_k log w_k - log K with K = `samples`, shape (n,), nats.

    The proposal is the encoder's q(z|x), or the model's `posterior_at(params)` (n, posterior.size) when given.
    For a conditional model and its conditions c (n, m), the bound on log p(x | c), q(z | x, c) the proposal.

    The K weights w_k = p(x, z_k) / q(z_k|x) are drawn `chunk` at a time and folded into a running
    logsumexp, `batch` examples at a time: memory grows with batch * chunk * d, not with K or n.
    Example i uses the key fold_in(key, i), so its value does not depend on `batch` or on the other
    examples evaluated with it. The host calls one program per batch (`progress`: a bar on stderr with
    the time left); the loop over the chunks is looped by `loop` (default: the model's, `looping.for_model`).
    """
    loop = loop or looping.for_model(vae)
    valid = _chunk_mask(samples, chunk)

    def one_batch(x, i):
        return _batch_log_likelihood(loop, vae, x, key, i, valid, params, c)

    return in_blocks(one_batch, x, batch, progress, f"L_K, K = {samples}") - math.log(samples)


@looping.program
def _batch_log_likelihood(
    loop: Loop, vae: LatentModel, x: Array, key: Array, i: Array, valid: Array, params, c
) -> Array:
    """logsumexp of the log weights of the examples x[i] (b,), shape (b,): `valid` (chunks, chunk) as
    `_chunk_mask` gives it; params the posterior parameters of every example of x, c their conditions, or None."""
    start = jnp.full(i.shape, -jnp.inf, x.dtype)
    batch = (x[i], _example_keys(key, i), _batch_params(params, i), _batch_params(c, i))
    total, _ = loop.scan(_add_chunk, start, jnp.arange(valid.shape[0]), vae, valid, batch)
    return total


def _add_chunk(total: Array, j: Array, vae: LatentModel, valid: Array, batch: tuple) -> tuple[Array, None]:
    """The running logsumexp `total` (b,) of a batch = (x (b, d), keys (b, 2), params or None, conditions or
    None) with its chunk j."""

    def chunk_log_sum(xi, example_key, pi, ci):
        return _chunk_log_sum(vae, xi, example_key, j, valid[j], pi, ci)

    return jnp.logaddexp(total, jax.vmap(chunk_log_sum)(*batch)), None


def in_blocks(fn, x: Array, size: int, progress: bool, desc: str):
    """fn(x, i) over the examples of x (n, d), `size` at a time, from the host: i (size,) the indices of a
    block (the last padded with index 0), fn's outputs per example of the block (size, ...); returns them
    concatenated, (n, ...). With `progress`, a bar on stderr (`desc`) counts the examples, each block waited
    for; without, the blocks are dispatched without waiting."""
    n = x.shape[0]
    size = min(size, n)
    outputs = []
    with tqdm(total=n, desc=desc, unit="example", disable=not progress, leave=False) as bar:
        for start in range(0, n, size):
            i = np.arange(start, start + size)
            outputs.append(fn(x, np.where(i < n, i, 0).astype(np.int32)))
            if progress:
                jax.block_until_ready(outputs[-1])
                bar.update(min(size, n - start))
    return jax.tree.map(lambda *o: jnp.concatenate(o)[:n], *outputs)


def _chunk_mask(samples: int, chunk: int) -> Array:
    """(chunks, chunk) booleans: which of the draws, `chunk` (at most K) at a time, are among the K = `samples`;
    the last chunk may be short."""
    chunk = min(chunk, samples)
    n_chunks = -(-samples // chunk)
    return (jnp.arange(n_chunks * chunk) < samples).reshape(n_chunks, chunk)


def _chunk_log_sum(
    vae: LatentModel, xi: Array, example_key: Array, j: Array, valid: Array, pi: Array | None, ci: Array | None
) -> Array:
    """logsumexp of the log weights of chunk j of example xi (d,), its draws from fold_in(example_key, j);
    `valid` (chunk,) masks the draws past K in the last chunk; pi the example's posterior parameters, ci its
    condition (1, m), each or None."""
    chunk_key = jax.random.fold_in(example_key, j)
    log_w = log_importance_weights(vae, xi[None], key=chunk_key, samples=valid.shape[0], params=pi, c=ci)
    return jax.nn.logsumexp(jnp.where(valid, log_w[:, 0], -jnp.inf))


def _batch_params(params: Array | None, i: Array) -> Array | None:
    """The posterior parameters (or conditions) of the examples i (batch,), each as a batch of one, or None."""
    return None if params is None else params[i][:, None]


def _example_keys(key: Array, i: Array) -> Array:
    """The keys of the examples i (batch,): fold_in(key, i)."""
    return jax.vmap(lambda j: jax.random.fold_in(key, j))(i)


def _trapezoid_grid(lo: Array, hi: Array, points: int) -> tuple[Array, Array]:
    """A grid of `points` per dimension on the box [lo, hi] (each (k,)) and its log trapezoid weights.

    Returns z (points^k, k) and log w (points^k,) such that int f(z) dz ~= sum_g w_g f(z_g).
    """
    k = lo.shape[0]
    t = jnp.linspace(0.0, 1.0, points)
    z = jnp.stack(jnp.meshgrid(*(lo[:, None] + (hi - lo)[:, None] * t), indexing="ij"), axis=-1).reshape(-1, k)
    edge = jnp.log(jnp.where((t == 0) | (t == 1), 0.5, 1.0))
    edges = functools.reduce(operator.add, jnp.meshgrid(*[edge] * k, indexing="ij"))  # sum over the dimensions
    log_w = edges.reshape(-1) + jnp.sum(jnp.log((hi - lo) / (points - 1)))
    return z, log_w


QUADRATURE_BOUND = 6.0  # the coarse grid: the prior's means +- 6 sds ([-6, 6]^k for N(0, I)), all but 2e-9 of its mass
QUADRATURE_DROP = 30.0  # the fine grid covers every coarse point whose integrand is within 30 nats of the largest


def log_likelihood_quadrature(
    vae: LatentModel,
    x: Array,
    *,
    points: int = 64,
    coarse: int = 64,
    span: float = 6.0,
    batch: int = 8,
    progress: bool = False,
    c: Array | None = None,
) -> Array:
    """log p(x) = log int p(x|z) p(z) dz by the trapezoid rule, for latent dimension 1 or 2: shape (n,), nats;
    for a conditional model and its conditions c (n, m), log p(x | c) = log int p(x|z, c) p(z|c) dz, the
    coarse grid then per example, on the box of its p(z | c).

    Uses only `vae.decode(z).log_prob(x)` and the prior, so it holds for every likelihood. Two passes:
    a coarse grid of `coarse` points per dimension on the box of the prior's component means +- 6
    standard deviations ([-6, 6]^k for N(0, I)), shared by all examples, finds where
    p(x|z) p(z) lives (posteriors may be multimodal and far wider than q(z|x)); then, per example, a
    grid of `points` per dimension covers the box around every coarse point within 30 nats of the
    largest, widened by one coarse step and by `span` standard deviations of q(z|x) around its mean.
    The trapezoid rule converges faster than any power of the step for a smooth integrand that
    vanishes at the edges, but not where p(x, z) is far narrower in z than the coarse step (a sharp
    likelihood); `quadrature_change` measures it, and `report` states it for the first examples.
    `batch` examples at a time, QUADRATURE_BLOCK batches per program the host calls (`progress`: a bar on
    stderr with the time left).
    """
    if vae.latent_dim > 2:
        raise InputError(f"quadrature needs latent dimension 1 or 2, the model has {vae.latent_dim}")
    if c is not None:

        def conditional_block(x, i):
            return _conditional_quadrature_block(vae, x, c, i, points, coarse, span, batch)

        return in_blocks(conditional_block, x, batch * QUADRATURE_BLOCK, progress, "quadrature")
    grid = _coarse_grid(vae, coarse)

    def block(x, i):
        return _quadrature_block(vae, x, i, grid, points, span, batch)

    return in_blocks(block, x, batch * QUADRATURE_BLOCK, progress, "quadrature")


QUADRATURE_BLOCK = 16  # batches of the quadrature per program: the coarse grid's decoding is then done once


@eqx.filter_jit
def _coarse_grid(vae: LatentModel, coarse: int) -> tuple:
    """The quadrature's coarse grid: (z0 (coarse^k, k), its step (k,), p(x|z) at z0, log p(z0))."""
    prior = vae.prior()
    z0, step0 = _coarse_points(prior, coarse)
    return z0, step0, vae.decode(z0), prior.log_prob(z0)


def _coarse_points(prior: Distribution, coarse: int) -> tuple[Array, Array]:
    """The quadrature's coarse grid on the box of the prior (of one condition, if any) +- QUADRATURE_BOUND
    standard deviations: its points z0 (coarse^k, k) and its step (k,)."""
    lo0, hi0 = prior.box(QUADRATURE_BOUND)
    z0, _ = _trapezoid_grid(lo0, hi0, coarse)
    return z0, (hi0 - lo0) / (coarse - 1)


@eqx.filter_jit
def _quadrature_block(vae: LatentModel, x: Array, i: Array, grid: tuple, points: int, span: float, batch: int) -> Array:
    """`log_likelihood_quadrature` of the examples x[i] on the shared coarse `grid`, `batch` at a time: shape
    i.shape."""
    prior = vae.prior()
    z0, step0, likelihood0, log_prior0 = grid

    def one_batch(xb, _):
        log_f0 = likelihood0.log_prob(xb[:, None, :]) + log_prior0  # (b, coarse^k)
        mean, std = vae.encode(xb).moments(jax.random.PRNGKey(MOMENTS_SEED))

        def one_example(xi, log_fi, q):
            return _fine_quadrature(vae, prior, xi, None, (z0, step0, log_fi), q, points, span)

        return jax.vmap(one_example)(xb, log_f0, (mean, std))

    return over_examples(one_batch, x, batch, i)


@eqx.filter_jit
def _conditional_quadrature_block(
    vae: LatentModel, x: Array, c: Array, i: Array, points: int, coarse: int, span: float, batch: int
) -> Array:
    """`log_likelihood_quadrature` of the examples x[i] given their conditions c[i], `batch` at a time, the coarse
    grid of each on the box of its p(z | c): shape i.shape."""

    def one_example(xi, ci):
        ci = ci[None]
        prior = vae.prior(ci)
        z0, step0 = _coarse_points(prior, coarse)
        log_f0 = _log_integrand(vae, prior, xi, ci, z0)  # (coarse^k,)
        q = tuple(m[0] for m in vae.encode(xi[None], ci).moments(jax.random.PRNGKey(MOMENTS_SEED)))
        return _fine_quadrature(vae, prior, xi, ci, (z0, step0, log_f0), q, points, span)

    return over_examples(lambda xb, ib: jax.vmap(one_example)(xb, c[ib]), x, batch, i)


def _fine_quadrature(
    vae: LatentModel,
    prior: Distribution,
    xi: Array,
    ci: Array | None,
    coarse: tuple,
    q: tuple,
    points: int,
    span: float,
) -> Array:
    """The quadrature's second pass for one example xi (d,) (its condition ci (1, m), or None): log of the
    trapezoid rule of p(xi | z, ci) p(z | ci) on a grid of `points` per dimension over the box of the points of
    the coarse grid (z0 (g, k), its step (k,), the log integrand there (g,)) within QUADRATURE_DROP of the largest
    value, widened by one coarse step, and by `span` standard deviations of q = (mean, std) (each (k,))."""
    z0, step0, log_f0 = coarse
    mean, std = q
    seen = (log_f0 > jnp.max(log_f0) - QUADRATURE_DROP)[:, None]
    lo = jnp.minimum(jnp.min(jnp.where(seen, z0, jnp.inf), axis=0) - step0, mean - span * std)
    hi = jnp.maximum(jnp.max(jnp.where(seen, z0, -jnp.inf), axis=0) + step0, mean + span * std)
    z, log_w = _trapezoid_grid(lo, hi, points)
    return jax.nn.logsumexp(_log_integrand(vae, prior, xi, ci, z) + log_w)


QUADRATURE_CHUNK = 1024  # grid points decoded at a time: a batch of 8 examples of the seed's model is 16 MB


def _log_integrand(vae: LatentModel, prior: Distribution, xi: Array, ci: Array | None, z: Array) -> Array:
    """log p(xi | z, ci) + log p(z | ci) at the points z (g, k): (g,), QUADRATURE_CHUNK points at a time (the last
    chunk padded). The chunks keep the decoder's activations small enough for the allocator to reuse their
    memory; larger ones are mapped afresh on every call, and touching their new pages costs as much time as the
    arithmetic on a 2-core CPU."""
    points = z.shape[0]
    chunk = min(QUADRATURE_CHUNK, points)
    chunks = -(-points // chunk)
    padded = jnp.pad(z, ((0, chunks * chunk - points), (0, 0))).reshape(chunks, chunk, z.shape[1])

    def of_chunk(zc):
        return vae.decode(zc, ci).log_prob(xi) + prior.log_prob(zc)

    return jax.lax.map(of_chunk, padded).reshape(-1)[:points]


QUADRATURE_CHECKED = 100  # examples whose quadrature `report` computes again on grids twice as fine


def quadrature_change(
    vae: LatentModel, x: Array, values: Array, *, progress: bool = False, c: Array | None = None
) -> float:
    """The largest change over the examples x (n, d) (conditions c (n, m), if any), in nats, of their quadrature
    `values` (n,) (at the default grids) when both grids have twice the points per dimension: how far from
    converged they are."""
    x = jnp.asarray(x, jnp.float32)
    finer = log_likelihood_quadrature(vae, x, points=128, coarse=128, progress=progress, c=c)
    return float(jnp.max(jnp.abs(finer - values)))


@eqx.filter_jit
def posterior_moments(
    vae: LatentModel, x: Array | np.ndarray, *, batch: int = 1000, c: Array | None = None
) -> tuple[Array, Array]:
    """Mean and standard deviation of q(z|x) (q(z|x, c) with the conditions c (n, m)), each of shape (n, k): in
    closed form for the Gaussian families, from `moment_draws` draws with a fixed key for a flow
    (`Distribution.moments`)."""

    def moments(xb, i):
        return vae.encode(xb, None if c is None else c[i]).moments(jax.random.PRNGKey(MOMENTS_SEED))

    return over_examples(moments, x, batch)


@eqx.filter_jit
def prior_draws(vae: LatentModel, key: Array, n: int) -> Array:
    """n draws z ~ p(z), shape (n, k), in one compiled program."""
    return vae.prior().sample(key, (n,))


@eqx.filter_jit
def conditional_prior_draws(vae: LatentModel, key: Array, c: Array) -> Array:
    """One draw z ~ p(z | c_i) for every row of c (n, m) of a conditional model: (n, k)."""
    prior = vae.prior(c)
    z = prior.sample(key)  # (n, k) where p(z | c) is per example (a prior network, per class, a deep model)
    return z if z.ndim == 2 else prior.sample(key, (c.shape[0],))  # N(0, I): (k,), so n draws


def class_samples(vae: LatentModel, labels: Array, key: Array) -> tuple[Array, Array]:
    """For a model conditioned on labels one-hot (C = `condition_dim` classes) and labels (n,): z_i ~ p(z | y_i)
    and the mean of p(x | z_i, y_i), shapes (n, k) and (n, d)."""
    c = jax.nn.one_hot(labels, vae.condition_dim)
    z = conditional_prior_draws(vae, key, c)
    return z, decoded_means(vae, z, c=c)


@eqx.filter_jit
def decoded_means(vae: LatentModel, z: Array, *, batch: int = 1000, c: Array | None = None) -> Array:
    """The mean of p(x|z) (or p(x|z, c)) for every row of z (n, k) (with its condition, a row of c (n, m)):
    shape (n, d)."""
    if c is None:
        return over_examples(lambda zb, _: vae.decode(zb).mean, z, batch)
    return over_examples(lambda zb, i: vae.decode(zb, c[i]).mean, z, batch)


KL_DIM_SAMPLES = 100  # draws per example of the Monte Carlo KL per dimension


@eqx.filter_jit
def kl_per_dimension(vae: LatentModel, x: Array, key: Array, *, batch: int = 10, c: Array | None = None) -> Array:
    """Mean over examples of KL(q(z_j|x) || p(z_j)) between the marginals of each latent dimension j,
    shape (k,), nats. In closed form where the KL separates over dimensions (diagonal q, N(0, I));
    otherwise the Monte Carlo mean of log q(z_j|x) - log p(z_j) over 100 draws z ~ q per example,
    which needs the marginal densities (Gaussian posteriors; not a flow: NaN there). With conditions c (n, m),
    of q(z_j|x, c) and p(z_j|c)."""

    def condition(i):
        return None if c is None else c[i]

    q, p = vae.encode(x[:1], condition(jnp.arange(1))), vae.prior(condition(jnp.arange(1)))
    closed_form = CLOSED_FORM_KL.get((type(q), type(p)))

    def prior(i):  # p(z) once for an unconditional model, p(z | c) of the batch's conditions else
        return p if c is None else vae.prior(c[i])

    if closed_form is not None and closed_form(q, p).shape[-1] == vae.latent_dim:

        def per_dim(xb, i):
            return closed_form(vae.encode(xb, condition(i)), prior(i))

    elif isinstance(q, Normal | FullNormal) and isinstance(p, Normal | Mixture | ClassMixture):  # with marginals

        def per_dim(xb, i):
            qb = cast(Normal | FullNormal, vae.encode(xb, condition(i)))  # of q's family
            pb = cast(Normal | Mixture | ClassMixture, prior(i))
            z = qb.sample(jax.random.fold_in(key, i[0]), (KL_DIM_SAMPLES,))
            return jnp.mean(qb.marginal_log_prob(z) - pb.marginal_log_prob(z), axis=0)

    else:
        return jnp.full(vae.latent_dim, jnp.nan)
    return jnp.mean(over_examples(per_dim, x, batch), axis=0)


def active_units(
    vae: LatentModel, x: Array, *, threshold: float = ACTIVE_THRESHOLD, c: Array | None = None
) -> list[int]:
    """Number of latent dimensions of each layer (bottom first) whose posterior mean varies over the data:
    Var_x E[z_j|x] > threshold (Burda et al. 2015); with conditions c (n, m), of E[z_j|x, c].

    Where E[z|x] is a Monte Carlo mean of M draws (a flow, a deep model), its noise adds E_x[Var(z_j|x)] / M
    to the variance over x; that is subtracted, so the count is unbiased."""
    mean, std = posterior_moments(vae, x, c=c)
    draws = type(eqx.filter_eval_shape(vae.encode, x[:1], None if c is None else c[:1])).moment_draws
    noise = jnp.mean(std**2, axis=0) / draws if draws else 0.0
    active = jnp.var(mean, axis=0) - noise > threshold
    edges = [sum(vae.sizes[:i]) for i in range(len(vae.sizes) + 1)]
    return [int(jnp.sum(active[a:b])) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def bits_per_dimension(log_px: Array, data_dim: int) -> Array:
    """-log p(x) / (d ln 2): the code length in bits per data dimension."""
    return -log_px / (data_dim * math.log(2))


def iw_key(key: Array) -> Array:
    """The key of L_K in `log_likelihoods` (and so in `report`) given theirs."""
    return jax.random.fold_in(key, Evaluation.IMPORTANCE_WEIGHTED)


def log_likelihoods(
    vae: LatentModel,
    x: Array | np.ndarray,
    key: Array,
    iw_samples: int = 5000,
    *,
    progress: bool = False,
    c: Array | None = None,
) -> dict[str, Array]:
    """Per-example estimates of log p(x) (log p(x | c) with conditions c (n, m)) for x (n, d), each (n,), nats:
    `log_likelihood`, L_K with K = iw_samples and the key `report` uses, and `log_likelihood_quadrature` where
    k <= 2 (`progress`: a bar on stderr for each)."""
    x = jnp.asarray(x, jnp.float32)
    out = {"log_likelihood": log_likelihood(vae, x, iw_key(key), samples=iw_samples, progress=progress, c=c)}
    if vae.latent_dim <= 2:
        out["log_likelihood_quadrature"] = log_likelihood_quadrature(vae, x, progress=progress, c=c)
    return out


def class_means(values: Array | np.ndarray, labels: np.ndarray, classes: int) -> list[float | None]:
    """The mean of per-example values (n,) over the examples of each class 0..classes-1 of labels (n,); None
    for a class without examples."""
    values, labels = np.asarray(values, np.float64), np.asarray(labels)
    return [float(values[labels == y].mean()) if np.any(labels == y) else None for y in range(classes)]


def standard_error(values: Array) -> float | None:
    """The standard error of the mean of values (n,): sd (with n - 1) / sqrt(n); None when n is 1."""
    n = values.shape[0]
    return None if n < 2 else float(jnp.std(values, ddof=1) / math.sqrt(n))


def report(
    vae: LatentModel,
    x: Array | np.ndarray,
    key: Array,
    iw_samples: int = 5000,
    likelihoods: dict | None = None,
    *,
    progress: bool = False,
    c: Array | None = None,
) -> dict:
    """Every evaluation figure for x (n, d), as means over examples in nats (JSON-ready Python values); for a
    conditional model and the conditions c (n, m), of log p(x | c) and q(z | x, c).

    Keys: elbo, reconstruction, kl (ELBO with 100 samples), log_likelihood (L_K, K = iw_samples),
    log_likelihood_se (its standard error over the examples, sd / sqrt(n); None for one example),
    log_likelihood_quadrature (latent dimension <= 2) with quadrature_checked, the number of examples (the
    first QUADRATURE_CHECKED) whose quadrature was computed again on grids twice as fine, and
    quadrature_change, the largest change that made (`quadrature_change`); bits_per_dim (from log_likelihood),
    kl_per_dim, kl_per_layer and active_units_per_layer (bottom layer first; one entry for one layer),
    active_units (their sum), n, iw_samples. The same key gives the same numbers. `likelihoods`: what
    `log_likelihoods(vae, x, key, iw_samples)` returns, when the caller has it already. `progress`: a bar on
    stderr, with the time left, for each long computation (L_K, the quadrature and its check).
    """
    x = jnp.asarray(x, jnp.float32)
    elbo_key = jax.random.fold_in(key, Evaluation.ELBO)
    kl_key = jax.random.fold_in(key, Evaluation.KL_PER_DIMENSION)
    terms = mean_elbo(vae, x, elbo_key, samples=ELBO_SAMPLES, chunk=100, c=c)
    likelihoods = likelihoods or log_likelihoods(vae, x, key, iw_samples, progress=progress, c=c)
    log_px = jnp.mean(likelihoods["log_likelihood"])
    units = active_units(vae, x, c=c)
    out = {
        "elbo": float(terms["elbo"]),
        "reconstruction": float(terms["reconstruction"]),
        "kl": float(terms["kl"]),
        "log_likelihood": float(log_px),
        "log_likelihood_se": standard_error(likelihoods["log_likelihood"]),
    }
    if "log_likelihood_quadrature" in likelihoods:
        quadrature = likelihoods["log_likelihood_quadrature"]
        checked = min(len(quadrature), QUADRATURE_CHECKED)
        out["log_likelihood_quadrature"] = float(jnp.mean(quadrature))
        out["quadrature_checked"] = checked
        check = None if c is None else c[:checked]
        out["quadrature_change"] = quadrature_change(vae, x[:checked], quadrature[:checked], progress=progress, c=check)
    out |= {
        "bits_per_dim": float(bits_per_dimension(log_px, x.shape[1])),
        "kl_per_dim": [None if math.isnan(v) else v for v in map(float, kl_per_dimension(vae, x, kl_key, c=c))],
        "kl_per_layer": [float(v) for v in mean_layer_kls(vae, x, kl_key, samples=ELBO_SAMPLES, c=c)],
        "active_units": sum(units),
        "active_units_per_layer": units,
        "n": int(x.shape[0]),
        "iw_samples": iw_samples,
    }
    return out
