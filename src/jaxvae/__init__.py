"""jaxvae: variational autoencoders in JAX, from the derivation to a trained model."""

__all__ = ["VAE", "load"]


def __getattr__(name: str):
    """`jaxvae.VAE` and `jaxvae.load`, imported on first use: `import jaxvae.cli` need not load JAX."""
    if name == "VAE":
        from jaxvae.model import VAE

        return VAE
    if name == "load":
        from jaxvae.train import load

        return load
    raise AttributeError(f"module 'jaxvae' has no attribute {name!r}")
