"""Priors p(z): each is called with its VAE and returns a distribution over z in R^k.

A prior takes the model because the VampPrior is built from its encoder; the others ignore it. A prior is
also called with the condition c (n, m) of a conditional model: N(0, I) ignores it, a `PriorNetwork`
(Sohn et al. 2015's p(z | c)) maps it to a Gaussian per example, and a mixture or VampPrior made with
`classes` m holds one per class, p(z | y) that of each example's label y (c one-hot).
"""

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from jaxvae.distributions import ClassMixture, Distribution, Mixture, Normal

if TYPE_CHECKING:  # the model holds its prior: the protocol is named for the type checker only
    from jaxvae.model import LatentModel


class Prior(eqx.Module):
    """p(z) of a model: called with the model, a distribution over its top latent layer."""

    @abc.abstractmethod
    def __call__(self, model: "LatentModel", c: Array | None = None) -> Distribution: ...


def _of_class(prior: Prior, per_class: Mixture, classes: int, c: Array | None) -> Mixture | ClassMixture:
    """The mixture of each example's class, a ClassMixture of `per_class` (logits (classes, C)) and c (n, classes)
    one-hot; `per_class` itself where the prior has no classes (0) and c is None."""
    if (c is None) != (classes == 0):
        need = "needs the condition c, a label one-hot" if classes else "is a prior p(z): it takes no condition"
        raise TypeError(f"{type(prior).__name__} {need}")
    return per_class if c is None else ClassMixture(per_class, c)


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
    """p(z) = sum_j w_j N(z | m_j, diag s_j^2) with learned weights softmax(logits) (C,), means (C, k)
    and log-variances (C, k). Starts with equal weights, unit variances and means drawn from N(0, I).

    With `classes` m > 0, one mixture per class of a model conditioned on labels: logits (m, C), means and
    log-variances (m, C, k); called with c (n, m) one-hot, p(z | y) is the mixture of each example's label y,
    over (n, k)."""

    logits: Array
    means: Array
    log_vars: Array

    def __init__(self, latent_dim: int, components: int, *, key: Array, classes: int = 0):
        per_class = (classes,) if classes else ()
        self.logits = jnp.zeros((*per_class, components))
        self.means = jax.random.normal(key, (*per_class, components, latent_dim))
        self.log_vars = jnp.zeros((*per_class, components, latent_dim))

    def __call__(self, model=None, c: Array | None = None) -> Mixture | ClassMixture:
        classes = self.logits.shape[0] if self.logits.ndim == 2 else 0
        return _of_class(self, Mixture(self.logits, Normal(self.means, self.log_vars)), classes, c)


class VampPrior(Prior):
    """The VampPrior (Tomczak and Welling 2018): p(z) = (1/C) sum_c q(z | u_c), the encoder's posteriors
    at C learned pseudo-inputs u (C, d), over the top latent layer (`top_gaussian`). For a flow posterior
    the components are its Gaussian base (see posteriors). The pseudo-inputs start as N(0.05, 0.01^2)
    noise, as in the authors' code.

    With `classes` m > 0, one VampPrior per class of a model conditioned on labels: pseudo-inputs u (m, C, d),
    p(z | y) = (1/C) sum_j q(z | u_yj, y), those of each example's label y (c (n, m) one-hot), over (n, k).
    Every class's C components are computed at each call (m C passes of the encoder)."""

    pseudo_inputs: Array

    def __init__(self, data_dim: int, components: int, *, key: Array, classes: int = 0):
        per_class = (classes,) if classes else ()
        self.pseudo_inputs = 0.05 + 0.01 * jax.random.normal(key, (*per_class, components, data_dim))

    def __call__(self, model: "LatentModel", c: Array | None = None) -> Mixture | ClassMixture:
        u = self.pseudo_inputs
        if u.ndim == 2:
            return _of_class(self, Mixture(jnp.zeros(u.shape[0]), model.top_gaussian(u)), 0, c)
        classes, components, d = u.shape
        labels = jnp.repeat(jnp.eye(classes, dtype=u.dtype), components, axis=0)  # u_yj's class y, (m C, m)
        gaussians = model.top_gaussian(u.reshape(classes * components, d), labels)
        per_class = jax.tree.map(lambda a: a.reshape(classes, components, *a.shape[1:]), gaussians)
        return _of_class(self, Mixture(jnp.zeros((classes, components)), per_class), classes, c)
