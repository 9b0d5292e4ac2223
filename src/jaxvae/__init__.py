"""jaxvae: variational autoencoders in JAX, from the derivation to a trained model."""

__all__ = ["ModelConfig", "VAE", "load"]


def __getattr__(name: str):
    """`jaxvae.ModelConfig`, `jaxvae.VAE` and `jaxvae.load`, imported on first use: `import jaxvae.cli` need not
    load JAX."""
    if name == "ModelConfig":
        from jaxvae.config import ModelConfig

        return ModelConfig
    if name == "VAE":
        from jaxvae.model import VAE

        return VAE
    if name == "load":
        from jaxvae.train import load

        return load
    raise AttributeError(f"module 'jaxvae' has no attribute {name!r}")
