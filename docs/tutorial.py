# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Variational autoencoders, from probability theory to a trained model
#
# This notebook is jaxvae's seed document made runnable: the derivation of the variational
# autoencoder (VAE), one step at a time, each step next to code that checks it on real numbers with
# jaxvae's own functions, and at the end the seed's model trained on real images.
#
# Every claim is a `check(...)`: it prints the numbers it compares, with ✓ when the claim holds, and
# stops the notebook when it does not. Nothing below is only asserted in prose.
#
# All quantities are in **nats** (natural logarithms), per example: summed over pixels and latent
# dimensions. Higher ELBO and log-likelihood are better.
#
# **Settings.** The first cell reads `JAXVAE_TUTORIAL_FAST`. Unset (the reader's setting), the model
# is trained on Fashion-MNIST when Debian's `dataset-fashion-mnist` is installed (otherwise on
# scikit-learn's 8x8 `digits`) with finer grids and more Monte Carlo repetitions; `=1` (the test
# suite's setting) uses `digits`, a few epochs and fewer repetitions. Every check holds in both.

# %%
import math
import os
import tempfile
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from IPython.display import Image, display
from scipy.stats import norm

with warnings.catch_warnings():  # tqdm warns when ipywidgets is missing, then shows a text progress bar
    warnings.filterwarnings("ignore", message="IProgress not found")
    from jaxvae import plots
    from jaxvae.builder import build_model
    from jaxvae.config import ModelConfig, RunConfig, TrainConfig
    from jaxvae.data import FASHION_MNIST_DIR, load_dataset
    from jaxvae.distributions import Bernoulli, Normal, kl_normal
    from jaxvae.evaluate import log_likelihood_quadrature, mean_elbo
    from jaxvae.gaps import fit_posteriors, paired_elbos
    from jaxvae.model import VAE
    from jaxvae.objectives import elbo, iwae, log_importance_weights
    from jaxvae.runs import read_metrics
    from jaxvae.train import fit

FAST = os.environ.get("JAXVAE_TUTORIAL_FAST", "0") == "1"
DATASET = "fashion-mnist" if FASHION_MNIST_DIR.is_dir() and not FAST else "digits"
EPOCHS = 15 if FAST else (20 if DATASET == "fashion-mnist" else 200)
GRID = 200 if FAST else 400  # quadrature points per latent axis
REPEATS = 400 if FAST else 2000  # independent Monte Carlo repetitions per experiment
print(f"dataset {DATASET}, {EPOCHS} epochs, {GRID}x{GRID} quadrature grid, {REPEATS} repetitions")


def check(claim: str, holds) -> None:
    """Print a claim with its numbers; stop the notebook if it does not hold (for every element)."""
    holds = bool(np.all(holds))
    print(("✓ " if holds else "✗ FAILED: ") + claim)
    if not holds:
        raise AssertionError(claim)


def rounded(values, digits: int = 3) -> list:
    """Values as a plain list of rounded floats, for printing."""
    return np.round(np.asarray(values, np.float64), digits).tolist()


def keys(seed: int, n: int) -> jax.Array:
    """n independent PRNG keys."""
    return jax.random.split(jax.random.PRNGKey(seed), n)


# %% [markdown]
# ## 1. A latent variable model
#
# Our data are vectors $x \in \mathbb{R}^d$: images of $d$ pixels with grey values in $[0, 1]$. We
# explain each one by an unobserved *latent* vector $z \in \mathbb{R}^k$, here $k = 2$, through a
# joint density that a neural network parameterizes with weights $\theta$:
#
# $$p_\theta(x, z) = p(z)\, p_\theta(x \mid z), \qquad p(z) = \mathcal{N}(0, I), \qquad
#   p_\theta(x \mid z) = \prod_{i=1}^d \mathrm{Bernoulli}\big(x_i \mid \sigma(f_\theta(z)_i)\big).$$
#
# The decoder $f_\theta$ outputs one *logit* per pixel (the seed's network: one hidden layer of 512
# tanh units). Generating an image is ancestral sampling: draw $z \sim p(z)$, then
# $x \sim p_\theta(x \mid z)$. The model of the data is the marginal
#
# $$p_\theta(x) = \int_{\mathbb{R}^k} p_\theta(x \mid z)\, p(z)\, dz ,$$
#
# and maximum likelihood asks for $\hat\theta = \arg\max_\theta \sum_{i=1}^n \log p_\theta(x_i)$.
#
# Below: the data, the seed's model at its random initialization, and a check that the decoder does
# define a distribution over each pixel.

# %%
data = load_dataset(DATASET)
d = data.x_train.shape[1]
config = ModelConfig(data_shape=data.shape)  # the seed's model: d-512-2 tanh, Bernoulli decoder
vae0 = build_model(config, key=jax.random.PRNGKey(0))  # untrained: the derivation holds for any parameters
x = jnp.asarray(data.x_test[:8])  # eight test images to check the derivation on
print(f"{len(data.x_train)} training and {len(data.x_test)} test images of shape {data.shape} (d = {d})")

z = vae0.prior().sample(jax.random.PRNGKey(1), (4,))  # z ~ p(z), shape (4, 2)
p_x_given_z = vae0.decode(z)  # a Bernoulli over the d pixels for each z
x_generated = p_x_given_z.sample(jax.random.PRNGKey(2))
print("z ~ p(z):", rounded(z, 3), "-> x of shape", x_generated.shape)

# each pixel: P(x_i = 1 | z) + P(x_i = 0 | z) = 1, from the log-probabilities the model computes
pixel = Bernoulli(p_x_given_z.logits[..., None])  # one distribution per pixel
total = jnp.exp(pixel.log_prob(jnp.ones((4, d, 1)))) + jnp.exp(pixel.log_prob(jnp.zeros((4, d, 1))))
check(
    f"p(x_i = 1 | z) + p(x_i = 0 | z) = 1 for all {4 * d} pixels: max error {jnp.abs(total - 1).max():.1e}",
    jnp.abs(total - 1).max() < 1e-5,
)

# %% [markdown]
# ## 2. Why $\log p_\theta(x)$ is intractable
#
# For a neural decoder the integral over $z$ has no closed form. With $k = 2$ we can still compute it
# numerically: the code below is a plain midpoint rule on an $m \times m$ grid over the box
# $[-6, 6]^2$, where the prior has all but $10^{-8}$ of its mass. It is written here for the
# reader to see, and it is pedagogical: a fixed box and a fixed grid, checked by the two conditions
# printed below it (refining the grid does not change the answer, and the posterior puts no mass on
# the edge of the box).
#
# $$\log p_\theta(x) \approx \log \sum_{g} p_\theta(x \mid z_g)\, p(z_g)\, \Delta A .$$
#
# It costs $m^k$ decoder evaluations for each $x$: fine for $k = 2$, hopeless for the latent
# dimensions people use (printed below). That is why the VAE optimizes a bound instead.


# %%
def latent_grid(m: int, half_width: float = 6.0) -> tuple[jax.Array, float]:
    """Midpoints of an m x m grid of cells over [-half_width, half_width]^2: (m*m, 2), and the cell area."""
    edges = np.linspace(-half_width, half_width, m + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    z = np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    return jnp.asarray(z, jnp.float32), float((edges[1] - edges[0]) ** 2)


@eqx.filter_jit
def log_likelihood_on_grid(vae: VAE, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p(x_j | z_g) for every example x_j (n, d) and grid point z_g (G, 2): shape (n, G)."""
    chunks = z.reshape(-1, math.gcd(z.shape[0], 2048), 2)  # bounded memory: 2048 grid points at a time
    per_chunk = jax.lax.map(lambda zc: vae.decode(zc[:, None, :]).log_prob(x[None]), chunks)
    return per_chunk.reshape(-1, x.shape[0]).T


def quadrature(vae: VAE, x: jax.Array, m: int) -> dict:
    """log p(x) by the midpoint rule, with what the later checks need: the grid, log p(x|z), log p(x, z)."""
    z, area = latent_grid(m)
    log_lik = log_likelihood_on_grid(vae, x, z)
    log_joint = log_lik + vae.prior().log_prob(z)
    log_px = jax.nn.logsumexp(log_joint, axis=1) + math.log(area)
    posterior_mass = jnp.exp(log_joint - log_px[:, None]) * area  # p(z_g | x) dA, sums to 1 over g
    edge = posterior_mass.reshape(-1, m, m)
    edge_mass = edge[:, [0, -1], :].sum((1, 2)) + edge[:, 1:-1, [0, -1]].sum((1, 2))
    return dict(z=z, area=area, log_lik=log_lik, log_joint=log_joint, log_px=log_px, edge_mass=edge_mass)


# A model small enough to enumerate every x: d = 3 binary pixels, 2^3 = 8 possible images.
tiny = build_model(ModelConfig(data_shape=(3,), hidden=(16,)), key=jax.random.PRNGKey(3))
all_images = jnp.asarray(np.array(np.meshgrid(*[[0, 1]] * 3)).reshape(3, -1).T, jnp.float32)
total = jnp.exp(quadrature(tiny, all_images, GRID)["log_px"]).sum()
check(
    f"p(x) = integral of p(x|z) p(z) dz is a distribution: sum over all 8 images of a 3-pixel model = {total:.6f}",
    abs(total - 1) < 1e-4,
)

outside = 1 - (1 - 2 * norm.cdf(-6.0)) ** 2
check(f"the prior's mass outside the box [-6, 6]^2 is {outside:.1e} < 1e-8", outside < 1e-8)
quad0 = quadrature(vae0, x, GRID)
coarse = quadrature(vae0, x, GRID // 2)["log_px"]
print("log p(x) of the eight test images, untrained model (nats):", np.round(np.asarray(quad0["log_px"]), 3))
check(
    f"grid converged: {GRID // 2}^2 and {GRID}^2 points differ by at most "
    f"{jnp.abs(coarse - quad0['log_px']).max():.1e} nats",
    jnp.abs(coarse - quad0["log_px"]) < 1e-3,
)
check(f"box wide enough: posterior mass on its edge at most {quad0['edge_mass'].max():.1e}", quad0["edge_mass"] < 1e-6)
for k in (2, 10, 32):
    print(f"k = {k:2d}: {GRID}^{k} = {float(GRID) ** k:.1e} decoder evaluations per image at this resolution")


# %% [markdown]
# ## 3. The evidence lower bound, by Jensen's inequality
#
# Take any density $q(z)$ that is positive wherever $p_\theta(x, z)$ is. Multiplying and dividing by
# it turns the integral into an expectation under $q$:
#
# $$\log p_\theta(x) = \log \int q(z)\, \frac{p_\theta(x, z)}{q(z)}\, dz
#   = \log \mathbb{E}_{z \sim q}\!\left[\frac{p_\theta(x, z)}{q(z)}\right]
#   \;\ge\; \mathbb{E}_{z \sim q}\!\left[\log \frac{p_\theta(x, z)}{q(z)}\right] =: \mathrm{ELBO}(x; q),$$
#
# because $\log$ is concave (Jensen's inequality: $\log \mathbb{E}[W] \ge \mathbb{E}[\log W]$). The
# gap is exactly a divergence to the true posterior $p_\theta(z \mid x) = p_\theta(x, z) / p_\theta(x)$:
#
# $$\log p_\theta(x) - \mathrm{ELBO}(x; q) = \mathrm{KL}\big(q(z) \,\|\, p_\theta(z \mid x)\big) \ge 0,$$
#
# so the bound is tight when $q$ is the posterior, and loose by as much as $q$ misses it.
#
# We measure all of this on the untrained model, against the quadrature above, for three choices of
# $q$: the encoder's $q(z \mid x)$ (section 4), the prior, and a Gaussian with the posterior's own
# mean and covariance (computed on the grid). The ELBO of each is computed on the same grid, with no
# sampling, so the inequality is checked without Monte Carlo noise.


# %%
def elbo_on_grid(q: Normal, quad: dict) -> jax.Array:
    """ELBO(x; q) = integral of q(z) log(p(x, z) / q(z)) dz on the grid, for q over (n, 2): shape (n,)."""
    log_q = q.log_prob(quad["z"][:, None, :]).T  # (n, G)
    weight = jnp.exp(log_q) * quad["area"]
    check(
        f"q is resolved by the grid: its mass on the grid is 1 within {jnp.abs(weight.sum(1) - 1).max():.1e}",
        jnp.abs(weight.sum(1) - 1) < 1e-3,
    )
    return jnp.sum(weight * (quad["log_joint"] - log_q), axis=1)


def kl_to_posterior_on_grid(q: Normal, quad: dict) -> jax.Array:
    """KL(q || p(z|x)) on the grid, shape (n,)."""
    log_q = q.log_prob(quad["z"][:, None, :]).T
    log_posterior = quad["log_joint"] - quad["log_px"][:, None]
    return jnp.sum(jnp.exp(log_q) * quad["area"] * (log_q - log_posterior), axis=1)


def posterior_moments(quad: dict) -> Normal:
    """The Gaussian with the grid posterior's mean and per-axis variance, shape (n, 2)."""
    w = jnp.exp(quad["log_joint"] - quad["log_px"][:, None]) * quad["area"]
    mean = w @ quad["z"]
    return Normal(mean, jnp.log(w @ quad["z"] ** 2 - mean**2))


q0 = vae0.encode(x)  # the encoder's q(z|x) for each image
candidates = {
    "encoder q(z|x)": q0,
    "prior N(0, I)": Normal(jnp.zeros_like(q0.mean), jnp.zeros_like(q0.mean)),
    "posterior moments": posterior_moments(quad0),
}
bounds = {name: elbo_on_grid(q, quad0) for name, q in candidates.items()}
print(f"{'image':>5} {'log p(x)':>10}" + "".join(f"{name:>20}" for name in bounds))
for j in range(len(x)):
    print(f"{j:5d} {quad0['log_px'][j]:10.3f}" + "".join(f"{b[j]:20.3f}" for b in bounds.values()))
for name, bound in bounds.items():
    gap = quad0["log_px"] - bound
    check(f"ELBO <= log p(x) for q = {name}: gaps {rounded(gap, 3)} nats", gap >= -1e-3)
    kl = kl_to_posterior_on_grid(candidates[name], quad0)
    check(f"  and each gap is KL(q || p(z|x)) = {rounded(kl, 3)}", jnp.abs(gap - kl) < 1e-3)
smallest = quad0["log_px"] - bounds["posterior moments"]
check(
    f"the q closest to the posterior has the smallest gap: {smallest.mean():.3f} nats on average, "
    f"vs {(quad0['log_px'] - bounds['encoder q(z|x)']).mean():.3f} (encoder) and "
    f"{(quad0['log_px'] - bounds['prior N(0, I)']).mean():.3f} (prior)",
    [smallest <= quad0["log_px"] - b + 1e-3 for b in bounds.values()],
)

# %% [markdown]
# ## 4. Factorization and amortization
#
# By the chain rule $p_\theta(x, z) = p_\theta(x \mid z)\, p(z)$, the ELBO splits into a
# reconstruction term and a divergence from the prior:
#
# $$\mathrm{ELBO}(x; q) = \mathbb{E}_{z \sim q}\big[\log p_\theta(x \mid z)\big]
#   - \mathrm{KL}\big(q(z) \,\|\, p(z)\big).$$
#
# The first term needs only samples of $q$ and one decoder evaluation per sample (section 6); the
# second has a closed form for Gaussians (section 5). Compare this with $\log \int p_\theta(x \mid z)
# p(z)\, dz$, which needs the whole integral before taking the logarithm.
#
# Two assumptions make it cheap for a whole data set:
#
# * **Mean field.** The variational distribution over all latents factorizes over data points,
#   $q(z_1, \dots, z_n) = \prod_i q_i(z_i)$, so the ELBO of the data set is the sum of per-example
#   ELBOs (jaxvae's objectives return one value per example), and a minibatch mean estimates it.
# * **Amortization.** Instead of $n$ separate $q_i$, one network (the encoder $g_\phi$) maps each $x$ to
#   its $q(z \mid x) = q(z; g_\phi(x))$. The number of variational parameters no longer grows with $n$,
#   and an image never seen in training gets its $q$ from one forward pass.

# %%
reconstruction = jnp.sum(jnp.exp(q0.log_prob(quad0["z"][:, None, :]).T) * quad0["area"] * quad0["log_lik"], axis=1)
split = reconstruction - kl_normal(q0, vae0.prior())
check(
    f"E_q[log p(x|z)] - KL(q || p) = E_q[log p(x, z) / q(z)]: largest difference "
    f"{jnp.abs(split - bounds['encoder q(z|x)']).max():.1e} nats",
    jnp.abs(split - bounds["encoder q(z|x)"]) < 1e-3,
)

# mean field: q over all n*k latents of the batch is one diagonal Normal; its KL is the sum over examples
joint_q = Normal(q0.mean.reshape(-1), q0.log_var.reshape(-1))
joint_prior = Normal(jnp.zeros(joint_q.mean.shape), jnp.zeros(joint_q.mean.shape))
per_example = kl_normal(q0, vae0.prior())
check(
    f"mean field: KL of the joint q over {len(x)} examples = {kl_normal(joint_q, joint_prior):.4f} "
    f"= sum of per-example KLs {per_example.sum():.4f}",
    jnp.isclose(kl_normal(joint_q, joint_prior), per_example.sum(), rtol=1e-5),
)
z_all = joint_q.sample(jax.random.PRNGKey(4))
joint_log_q, per_example_log_q = joint_q.log_prob(z_all), q0.log_prob(z_all.reshape(q0.mean.shape))
check(
    f"mean field: log q(z_1, ..., z_n) = {joint_log_q:.4f} = sum_i log q_i(z_i) = {per_example_log_q.sum():.4f}",
    jnp.isclose(joint_log_q, per_example_log_q.sum(), rtol=1e-5),
)

encoder_params = sum(a.size for a in jax.tree.leaves(eqx.filter(vae0.encoder, eqx.is_array)))
print(
    f"amortized: the encoder has {encoder_params:,} parameters for any number of images; one q per "
    f"image would need 2k = 4 parameters each, {4 * len(data.x_train):,} for the training set alone"
)

# %% [markdown]
# ## 5. The Gaussian posterior and its closed-form KL
#
# The encoder outputs a mean and a log-variance per latent dimension:
# $q(z \mid x) = \mathcal{N}\big(\mu_\phi(x), \mathrm{diag}\, \sigma^2_\phi(x)\big)$. Against the prior
# $\mathcal{N}(0, I)$ the divergence is a sum over the $k$ dimensions of one-dimensional Gaussian
# integrals:
#
# $$\mathrm{KL}(q \,\|\, p) = \mathbb{E}_q[\log q(z) - \log p(z)]
#   = \frac12 \sum_{j=1}^k \left(\sigma_j^2 + \mu_j^2 - 1 - \log \sigma_j^2\right).$$
#
# `jaxvae.distributions.kl_normal` computes this (for any two diagonal Normals). We check it against
# a Monte Carlo estimate of its definition, $\frac1N \sum_s \log q(z_s) - \log p(z_s)$ with
# $z_s \sim q$, within four standard errors.
#
# The likelihood is computed from logits: $\log p(x \mid z) = \sum_i x_i l_i - \mathrm{softplus}(l_i)$.
# The seed's notebook computed `log(sigmoid(l) + 1e-8)` instead, which is wrong as soon as a pixel is
# confidently predicted (printed below).

# %%
q_for_kl = Normal(q0.mean + jnp.array([1.0, -0.5]), q0.log_var - 1.0)  # move q away from the prior a little
closed = kl_normal(q_for_kl, vae0.prior())
by_hand = 0.5 * jnp.sum(jnp.exp(q_for_kl.log_var) + q_for_kl.mean**2 - 1 - q_for_kl.log_var, axis=-1)
z_s = q_for_kl.sample(jax.random.PRNGKey(5), (20 * REPEATS,))
log_ratio = q_for_kl.log_prob(z_s) - vae0.prior().log_prob(z_s)  # (N, n)
monte_carlo, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(z_s))
print("closed form :", np.round(np.asarray(closed), 4))
print(f"Monte Carlo : {np.round(np.asarray(monte_carlo), 4)}  (N = {len(z_s)} samples)")
check(
    f"kl_normal is the formula above: largest difference {jnp.abs(closed - by_hand).max():.1e}",
    jnp.allclose(closed, by_hand, atol=1e-5),
)
check(
    f"closed form = Monte Carlo within 4 standard errors: |difference| / stderr at most "
    f"{(jnp.abs(closed - monte_carlo) / stderr).max():.2f}",
    jnp.abs(closed - monte_carlo) < 4 * stderr,
)

logits = jnp.array([-25.0, -5.0, 0.0, 5.0, 25.0])
errors = []
for value in (0.0, 1.0):
    pixels = jnp.full_like(logits, value)
    exact = Bernoulli(logits[:, None]).log_prob(pixels[:, None])  # one pixel at a time: (5,)
    s = jax.nn.sigmoid(logits)
    seed_way = pixels * jnp.log(s + 1e-8) + (1 - pixels) * jnp.log(1 - s + 1e-8)
    errors.append(jnp.abs(seed_way - exact).max())
    print(f"x = {value:.0f}, logits {logits.tolist()}: from logits {rounded(exact)}, seed's {rounded(seed_way)}")
check(
    f"the seed's formula is off by {max(errors):.2f} nats where the model is confidently wrong "
    "(|logit| = 25 on the other side of the pixel)",
    min(errors) > 1,
)


# %% [markdown]
# ## 6. Monte Carlo with $S$ samples
#
# The reconstruction term is estimated by averaging over $S$ draws from $q$:
#
# $$\widehat{\mathrm{ELBO}}_S(x) = \frac1S \sum_{s=1}^S \log p_\theta(x \mid z^{(s)}) - \mathrm{KL}(q \,\|\, p),
#   \qquad z^{(s)} \sim q(z \mid x).$$
#
# It is unbiased for every $S$ (its mean is the ELBO), and its variance falls as $1/S$: more samples
# buy precision, not a better bound. `jaxvae.objectives.elbo(vae, x, key=..., samples=S)` computes it;
# below, `REPEATS` independent estimates for each $S$ against the grid value of section 3.

# %%
elbo_exact0 = bounds["encoder q(z|x)"]


@eqx.filter_jit
def elbo_draws(vae, x, keys, samples):
    """Independent S-sample ELBO estimates, one per key: (len(keys), n), 16 keys at a time."""
    return jax.lax.map(lambda key: elbo(vae, x, key=key, samples=samples).elbo, keys, batch_size=16)


variances = {}
print(f"{'S':>4} {'mean - exact (nats)':>22} {'S x variance':>14}   (averaged over the {len(x)} images)")
for S in (1, 4, 16, 64):
    draws = elbo_draws(vae0, x, keys(10 + S, REPEATS), S)
    stderr = draws.std(0) / math.sqrt(REPEATS)
    variances[S] = draws.var(0)
    print(f"{S:4d} {(draws.mean(0) - elbo_exact0).mean():22.4f} {(S * variances[S]).mean():14.3f}")
    z_scores = jnp.abs(draws.mean(0) - elbo_exact0) / stderr
    check(f"S = {S}: unbiased, |mean - exact| / stderr at most {z_scores.max():.2f}", z_scores < 4)
ratios = jnp.array([(S * variances[S] / variances[1]).mean() for S in (4, 16, 64)])
check(f"variance falls as 1/S: S x Var_S / Var_1 = {rounded(ratios, 3)} (1 expected)", jnp.abs(ratios - 1) < 0.2)


# %% [markdown]
# ## 7. The reparameterization trick
#
# Training needs the gradient of $\mathbb{E}_{z \sim q_\phi}[\log p_\theta(x \mid z)]$ with respect to the
# encoder's output $(\mu, \log \sigma^2)$ (and through it, $\phi$). The distribution we sample from
# depends on what we differentiate, so we cannot simply differentiate a sample. Two unbiased ways:
#
# * **Score function** (REINFORCE): $\nabla \mathbb{E}_q[f(z)] = \mathbb{E}_q[f(z)\, \nabla \log q(z)]$.
#   It needs only values of $f$, and its variance is large.
# * **Reparameterization**: write the sample as a differentiable function of parameter-free noise,
#   $z = \mu + \sigma \odot \epsilon$ with $\epsilon \sim \mathcal{N}(0, I)$; then
#   $\nabla \mathbb{E}_q[f(z)] = \mathbb{E}_\epsilon[\nabla f(\mu + \sigma \odot \epsilon)]$, and the
#   gradient flows through $f$ itself. This is what `Normal.sample` does, and what `elbo` differentiates.
#
# Below: one-sample estimates of each, `REPEATS` of them for each image, against the exact gradient
# (the grid integral of section 3, differentiated by JAX).


# %%
def expected_log_lik_on_grid(mean, log_var, log_lik_row, z_grid, area):
    """E_q[log p(x|z)] on the grid for one image: a differentiable function of q's parameters (k,), (k,)."""
    return jnp.sum(jnp.exp(Normal(mean, log_var).log_prob(z_grid)) * area * log_lik_row)


def reparameterized_gradient(key, mean, log_var, x_one):
    f = lambda m, lv: vae0.decode(Normal(m, lv).sample(key)).log_prob(x_one)  # noqa: E731
    return jnp.concatenate(jax.grad(f, argnums=(0, 1))(mean, log_var))


def score_function_gradient(key, mean, log_var, x_one):
    z_sample = jax.lax.stop_gradient(Normal(mean, log_var).sample(key))  # no gradient through the sample
    score = jax.grad(lambda m, lv: Normal(m, lv).log_prob(z_sample), argnums=(0, 1))(mean, log_var)
    return vae0.decode(z_sample).log_prob(x_one) * jnp.concatenate(score)


exact_grad = jax.vmap(
    lambda m, lv, row: jnp.concatenate(
        jax.grad(expected_log_lik_on_grid, argnums=(0, 1))(m, lv, row, quad0["z"], quad0["area"])
    )
)(q0.mean, q0.log_var, quad0["log_lik"])  # (n, 2k): d/dmu_1, d/dmu_2, d/dlogvar_1, d/dlogvar_2


@jax.jit
def gradient_draws(keys):
    per_image = lambda fn: jax.vmap(lambda k: jax.vmap(fn, in_axes=(None, 0, 0, 0))(k, q0.mean, q0.log_var, x))  # noqa: E731
    return per_image(reparameterized_gradient)(keys), per_image(score_function_gradient)(keys)


reparam, score = gradient_draws(keys(20, REPEATS))  # each (REPEATS, n, 2k)
for name, g in (("reparameterization", reparam), ("score function", score)):
    z_scores = jnp.abs(g.mean(0) - exact_grad) / (g.std(0) / math.sqrt(REPEATS))
    check(
        f"{name}: unbiased, |mean - exact| / stderr at most {z_scores.max():.2f} over all "
        f"{exact_grad.size} gradient components",
        z_scores < 4.5,
    )
ratio = score.var(0) / reparam.var(0)
print("variance ratio score / reparameterization, per image (rows) and component (mu_1, mu_2, logvar_1, logvar_2):")
print(np.round(np.asarray(ratio), 1))
check(
    f"reparameterization has lower variance in every component: ratio at least {ratio.min():.1f}, "
    f"median {jnp.median(ratio):.1f}",
    ratio > 1,
)


# %% [markdown]
# ## 8. More samples, two ways: $S$ reduces variance, $K$ reduces bias
#
# Averaging $S$ samples *inside* the expectation left the bound where it was (section 6). Averaging the
# importance weights $w_k = p_\theta(x, z_k) / q(z_k \mid x)$ *inside* the logarithm moves it:
#
# $$\mathcal{L}_K(x) = \mathbb{E}\left[\log \frac1K \sum_{k=1}^K w_k\right], \qquad z_k \sim q(z \mid x).$$
#
# $\frac1K \sum_k w_k$ is an unbiased estimate of $p_\theta(x)$, so Jensen's inequality again gives
# $\mathcal{L}_K \le \log p_\theta(x)$; $\mathcal{L}_1$ is the ELBO, and $\mathcal{L}_K$ rises towards
# $\log p_\theta(x)$ as $K$ grows (Burda, Grosse and Salakhutdinov, 2015). jaxvae computes
# $\log w_k$ with `log_importance_weights` and $\mathcal{L}_K$ with `iwae`.


# %%
@eqx.filter_jit
def iwae_draws(vae, x, keys, samples):
    """Independent estimates of L_K, one per key: (len(keys), n), 16 keys at a time."""
    return jax.lax.map(lambda key: iwae(vae, x, key=key, samples=samples), keys, batch_size=16)


def bound_with_k(vae, x, log_px, elbo_exact, repeats):
    """Table of E[L_K] against log p(x), with the checks of this section; returns the mean gaps."""
    log_w = log_importance_weights(vae, x, key=jax.random.PRNGKey(30), samples=16 * repeats)  # (N, n)
    z_scores = jnp.abs(log_w.mean(0) - elbo_exact) / (log_w.std(0) / math.sqrt(len(log_w)))
    check(
        f"E[log w] is the ELBO: |mean of {len(log_w)} log w - ELBO| / stderr at most {z_scores.max():.2f}", z_scores < 4
    )
    print(f"{'K':>5} {'log p(x) - E[L_K] (nats, mean over images)':>45}")
    means, stderrs = [], []
    for K in (1, 4, 16, 64, 256):
        draws = iwae_draws(vae, x, keys(40 + K, repeats), K)
        means.append(draws.mean(0))
        stderrs.append(draws.std(0) / math.sqrt(repeats))
        print(f"{K:5d} {(log_px - means[-1]).mean():45.4f}")
    means, stderrs = jnp.stack(means), jnp.stack(stderrs)
    z_scores = jnp.abs(means[0] - elbo_exact) / stderrs[0]
    check(f"L_1 is the ELBO: |E[L_1] - ELBO| / stderr at most {z_scores.max():.2f}", z_scores < 4)
    check(
        f"L_K <= log p(x) for every K and image: largest E[L_K] - log p(x) = {(means - log_px).max():.4f}",
        means <= log_px + 4 * stderrs + 1e-3,
    )
    steps = means[1:] - means[:-1]
    check(
        f"L_K rises with K (up to noise): smallest step {steps.min():.4f} nats",
        steps > -4 * jnp.sqrt(stderrs[1:] ** 2 + stderrs[:-1] ** 2),
    )
    gaps = (log_px - means).mean(1)
    check(f"the bias shrinks: gap {gaps[0]:.3f} nats at K = 1, {gaps[-1]:.3f} at K = 256", gaps[-1] < gaps[0] / 2)
    return gaps


gaps0 = bound_with_k(vae0, x, quad0["log_px"], elbo_exact0, REPEATS // 4)

# %% [markdown]
# ## 9. Training the seed's model
#
# The seed's model and settings: encoder and decoder with one hidden layer of 512 tanh units,
# $k = 2$, Bernoulli decoder, Adam with learning rate $10^{-3}$, batches of 32, one sample per ELBO.
# `jaxvae.train.fit` maximizes the mean ELBO over each batch (the step size does not depend on the
# batch size), runs each epoch as one compiled program, and writes a run folder (config, metrics,
# checkpoints, figures). Pixels are grey values in $[0, 1]$ used as Bernoulli targets, as in the seed.

# %%
run_dir = Path(tempfile.mkdtemp(prefix="jaxvae-tutorial-")) / "run"
run_config = RunConfig(config, TrainConfig(dataset=DATASET, epochs=EPOCHS))
vae = fit(run_config, data, run_dir, progress=False)
metrics = read_metrics(run_dir)
for m in metrics[:: max(1, len(metrics) // 5)] + metrics[-1:]:
    print(f"epoch {m['epoch']:4d}: train ELBO {m['train_elbo']:9.3f}, test ELBO {m['test_elbo']:9.3f} nats")
x_test = jnp.asarray(data.x_test)
before = mean_elbo(vae0, x_test, jax.random.PRNGKey(6))["elbo"]
after = mean_elbo(vae, x_test, jax.random.PRNGKey(6))["elbo"]
check(f"training raised the test ELBO from {before:.2f} to {after:.2f} nats per image", after > before + 1)
print(f"run folder: {run_dir}")

# %%
figures = run_dir / "tutorial-figures"
figures.mkdir()
shown = [
    plots.training_curve(metrics, figures / "training_curve.png"),
    plots.reconstructions(vae, data.x_test, data.shape, figures / "reconstructions.png"),
    plots.samples(vae, data.shape, figures / "samples.png", key=jax.random.PRNGKey(7)),
    plots.manifold(vae, data.shape, figures / "latent_manifold.png"),
    plots.latent_scatter(vae, data.x_test, data.y_test, figures / "latent_scatter.png"),
]
for path in shown:
    display(Image(filename=str(path)))

# %% [markdown]
# ## 10. The derivation again, on the trained model
#
# Every inequality above holds for any parameters, so it must hold after training too. Training
# makes the posterior narrow, so this is also where the quadrature and naive sampling are put to the
# test: sampling $z$ from the prior to estimate $p_\theta(x) = \mathbb{E}_{p(z)}[p_\theta(x \mid z)]$
# wastes most samples, while sampling from $q(z \mid x)$ (importance sampling, section 8)
# puts them where the posterior is. The effective sample size $(\sum w)^2 / \sum w^2$ says how many
# of $N$ samples count.

# %%
quad = quadrature(vae, x, GRID)
coarse = quadrature(vae, x, GRID // 2)["log_px"]
check(
    f"grid converged: {GRID // 2}^2 and {GRID}^2 points differ by at most "
    f"{jnp.abs(coarse - quad['log_px']).max():.1e} nats",
    jnp.abs(coarse - quad["log_px"]) < 1e-2,
)
check(f"box wide enough: posterior mass on its edge at most {quad['edge_mass'].max():.1e}", quad["edge_mass"] < 1e-6)
q = vae.encode(x)
elbo_exact = elbo_on_grid(q, quad)
gap = quad["log_px"] - elbo_exact
print(f"{'image':>5} {'log p(x)':>10} {'ELBO':>10} {'gap':>8}")
for j in range(len(x)):
    print(f"{j:5d} {quad['log_px'][j]:10.3f} {elbo_exact[j]:10.3f} {gap[j]:8.3f}")
check(
    f"ELBO <= log p(x) after training; gaps = KL(q || p(z|x)), {gap.mean():.3f} nats on average",
    (gap >= -1e-3) & (jnp.abs(gap - kl_to_posterior_on_grid(q, quad)) < 1e-2),
)

gaps = bound_with_k(vae, x, quad["log_px"], elbo_exact, REPEATS // 4)

N = 1000
z_prior = vae.prior().sample(jax.random.PRNGKey(8), (N,))
log_w_prior = vae.decode(z_prior[:, None, :]).log_prob(x[None])  # weights p(x|z) for z ~ p(z): (N, n)
log_w_q = log_importance_weights(vae, x, key=jax.random.PRNGKey(9), samples=N)


def effective_sample_size(log_w):
    w = jnp.exp(log_w - log_w.max(0))
    return w.sum(0) ** 2 / (w**2).sum(0)


ess_prior, ess_q = effective_sample_size(log_w_prior), effective_sample_size(log_w_q)
print(f"effective sample size of N = {N}: from the prior {rounded(ess_prior, 1)}")
print(f"                                from q(z|x)    {rounded(ess_q, 1)}")
median_prior, median_q = jnp.median(ess_prior), jnp.median(ess_q)
check(f"the prior wastes most samples: median ESS {median_prior:.1f} of {N}", median_prior < N / 5)
check(f"sampling from q does better: median ESS {median_q:.0f} of {N}", median_q > median_prior)

# %% [markdown]
# ## 11. The price of amortization, measured
#
# Section 10's gap $\log p_\theta(x) - \mathrm{ELBO}(x; q)$ has two causes (Cremer, Li and Duvenaud,
# 2018). The *family*: even the best diagonal Gaussian $q^*_x$ for this one $x$ may miss the posterior,
# the **approximation gap** $\log p_\theta(x) - \mathrm{ELBO}(x; q^*_x)$. The *encoder*: one network for
# every $x$ (section 4) need not output $q^*_x$, the **amortization gap**
# $\mathrm{ELBO}(x; q^*_x) - \mathrm{ELBO}(x; q)$. They add up to the whole gap.
#
# `jaxvae.gaps.fit_posteriors` finds $q^*_x$ for each example by Adam on that example's own mean and
# log-variance, starting from the encoder's output, until the bound stops improving;
# `paired_elbos` computes $\mathrm{ELBO}(q)$ and $\mathrm{ELBO}(q^*)$ from the same 1000 draws of
# $\epsilon$, so their difference has a small Monte Carlo error. Below: 16 training and 16 test images,
# against jaxvae's quadrature of $\log p_\theta(x)$ (itself checked against section 10's grid). Then the
# encoder alone is trained further with the decoder fixed: $\log p_\theta(x)$ and $q^*_x$ depend only on
# the decoder, so only the amortization gap can move. (`jaxvae evaluate RUN --gaps` does all this for a
# run, with a figure per example.)


# %%
def inference_gaps(vae: VAE, x: jax.Array, log_px: jax.Array) -> dict:
    """Per-example ELBO(q), ELBO(q*) (1000 common draws, with standard errors) and the two gaps, nats."""
    params, _ = fit_posteriors(vae, x, jax.random.PRNGKey(11))
    out = paired_elbos(vae, x, params, jax.random.PRNGKey(12))
    return out | {"log_px": log_px, "approximation_gap": log_px - out["elbo_optimized"]}


x_gaps = jnp.concatenate([jnp.asarray(data.x_train[:16]), x_test[:16]])  # 16 training images, then 16 test
log_px_gaps = log_likelihood_quadrature(vae, x_gaps)
check(
    f"jaxvae's quadrature = section 10's grid on the eight test images: largest difference "
    f"{jnp.abs(log_px_gaps[16:24] - quad['log_px']).max():.1e} nats",
    jnp.abs(log_px_gaps[16:24] - quad["log_px"]) < 1e-2,
)
measured = inference_gaps(vae, x_gaps, log_px_gaps)
z_scores = jnp.abs(measured["elbo"][16:24] - elbo_exact) / measured["elbo_se"][16:24]
check(
    f"the 1000-draw ELBO(q) is section 10's grid ELBO: |difference| / stderr at most {z_scores.max():.2f}", z_scores < 4
)
check(
    f"ELBO(q) <= ELBO(q*) for every image, within 4 standard errors: smallest amortization gap "
    f"{measured['amortization_gap'].min():.3f} nats",
    measured["amortization_gap"] > -4 * measured["amortization_gap_se"],
)
check(
    f"ELBO(q*) <= log p(x) for every image, within 4 standard errors: smallest approximation gap "
    f"{measured['approximation_gap'].min():.3f} nats",
    measured["approximation_gap"] > -4 * measured["elbo_optimized_se"],
)
for name, part in (("training", slice(0, 16)), ("test", slice(16, 32))):
    print(
        f"{name:>8} images: approximation gap {measured['approximation_gap'][part].mean():.3f}, "
        f"amortization gap {measured['amortization_gap'][part].mean():.3f} nats on average"
    )
display(Image(filename=str(plots.inference_gaps(measured, figures / "gaps.png", "quadrature"))))


# %%
@eqx.filter_jit
def train_encoder(vae: VAE, x: jax.Array, steps: int) -> VAE:
    """`steps` Adam steps on the mean ELBO of x with the decoder fixed: the encoder only, in batches of 32, at
    1e-4, a tenth of the training's rate, so that a fresh Adam's first steps, each about the rate in every
    weight, do not throw the trained encoder off its optimum."""
    optimizer = optax.adam(1e-4)

    def step(carry, key):
        encoder, state = carry
        batch = x[jax.random.choice(key, len(x), (32,), replace=False)]
        loss = lambda e: -jnp.mean(elbo(eqx.tree_at(lambda m: m.encoder, vae, e), batch, key=key).elbo)  # noqa: E731
        updates, state = optimizer.update(eqx.filter_grad(loss)(encoder), state)
        return (eqx.apply_updates(encoder, updates), state), None

    start = (vae.encoder, optimizer.init(eqx.filter(vae.encoder, eqx.is_array)))
    (encoder, _), _ = jax.lax.scan(step, start, keys(13, steps))
    return eqx.tree_at(lambda m: m.encoder, vae, encoder)


ENCODER_STEPS = 1000 if FAST else 3000
retrained = inference_gaps(train_encoder(vae, jnp.asarray(data.x_train), ENCODER_STEPS), x_gaps, log_px_gaps)
for name, part in (("training", slice(0, 16)), ("test", slice(16, 32))):
    before, after = measured["amortization_gap"][part].mean(), retrained["amortization_gap"][part].mean()
    check(
        f"{ENCODER_STEPS} more encoder steps shrink the amortization gap on {name} images: "
        f"{before:.3f} -> {after:.3f} nats",
        after < before,
    )
change = jnp.abs(retrained["approximation_gap"] - measured["approximation_gap"]).mean()
check(f"and leave the approximation gap where it was: mean change {change:.4f} nats", change < 0.02)

# %% [markdown]
# ## Where to go next
#
# * The same model from the command line: `jaxvae train --dataset fashion-mnist --out runs/fmnist --epochs 20`.
# * Change a setting in the first cell (more epochs, `DATASET = "digits"`) or in section 9 (`ModelConfig(
#   data_shape=data.shape, latent_dim=10)`): sections 1 to 8 hold for any model, the quadrature only for
#   $k = 2$.
# * Burda et al.'s importance-weighted training: `TrainConfig(objective="iwae", samples=K)`.
