"""Priors p(z): each is called with its VAE and returns a distribution over z in R^k.

A prior takes the model because the VampPrior is built from its encoder; the others ignore it. A prior is
also called with the condition c (n, m) of a conditional model: N(0, I) ignores it, a `PriorNetwork`
(Sohn et al. 2015's p(z | c)) maps it to a Gaussian per example; the mixtures take none.
"""

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.distributions import Distribution, Mixture, Normal

if TYPE_CHECKING:  # the model holds its prior: the protocol is named for the type checker only
    from jaxvae.model import LatentModel


class Prior(eqx.Module):
    """p(z) of a model: called with the model, a distribution over its top latent layer."""

    @abc.abstractmethod
    def __call__(self, model: "LatentModel", c: Array | None = None) -> Distribution: ...


def _unconditional(prior: Prior, c: Array | None) -> None:
    if c is not None:
        raise TypeError(f"{type(prior).__name__} is a prior p(z): it takes no condition")


class StandardNormal(Prior):
    """The seed's p(z) = N(0, I): nothing to learn."""

    latent_dim: int = eqx.field(static=True)

    def __call__(self, model=None, c: Array | None = None) -> Normal:
        return Normal(jnp.zeros(self.latent_dim), jnp.zeros(self.latent_dim))


class PriorNetwork(Prior):
    """A learned conditional prior p(z | c) = N(mu(c), diag sigma^2(c)) (Sohn et al. 2015's prior network):
    `network` maps one condition c (m,) to (mu, log sigma^2), each (k,); called with c (n, m), a Normal
    over (n, k). Its KL with a diagonal q(z | x, c) is in closed form."""

    network: Callable[[Array], Array]

    def __call__(self, model=None, c: Array | None = None) -> Normal:
        if c is None:
            raise TypeError("a prior network p(z | c) needs the condition c")
        mean, log_var = jnp.split(jax.vmap(self.network)(c), 2, axis=-1)
        return Normal(mean, log_var)


class GaussianMixture(Prior):
    """p(z) = sum_c w_c N(z | m_c, diag s_c^2) with learned weights softmax(logits) (C,), means (C, k)
    and log-variances (C, k). Starts with equal weights, unit variances and means drawn from N(0, I)."""

    logits: Array
    means: Array
    log_vars: Array

    def __init__(self, latent_dim: int, components: int, *, key: Array):
        self.logits = jnp.zeros(components)
        self.means = jax.random.normal(key, (components, latent_dim))
        self.log_vars = jnp.zeros((components, latent_dim))

    def __call__(self, model=None, c: Array | None = None) -> Mixture:
        _unconditional(self, c)
        return Mixture(self.logits, Normal(self.means, self.log_vars))


class VampPrior(Prior):
    """The VampPrior (Tomczak and Welling 2018): p(z) = (1/C) sum_c q(z | u_c), the encoder's posteriors
    at C learned pseudo-inputs u (C, d), over the top latent layer (`top_gaussian`). For a flow posterior
    the components are its Gaussian base (see posteriors). The pseudo-inputs start as N(0.05, 0.01^2)
    noise, as in the authors' code."""

    pseudo_inputs: Array

    def __init__(self, data_dim: int, components: int, *, key: Array):
        self.pseudo_inputs = 0.05 + 0.01 * jax.random.normal(key, (components, data_dim))

    def __call__(self, model: "LatentModel", c: Array | None = None) -> Mixture:
        _unconditional(self, c)
        components = model.top_gaussian(self.pseudo_inputs)
        return Mixture(jnp.zeros(self.pseudo_inputs.shape[0]), components)
