"""jaxvae: variational autoencoders in JAX, from the derivation to a trained model."""

from jaxvae.config import ModelConfig
from jaxvae.model import VAE
from jaxvae.train import load

__all__ = ["ModelConfig", "VAE", "load"]
