"""jaxvae: variational autoencoders in JAX, from the derivation to a trained model."""

from jaxvae.model import VAE
from jaxvae.train import load

__all__ = ["VAE", "load"]
