"""`python -m jaxvae.cli ...`, the same as the `jaxvae` command."""

from jaxvae.cli import run

if __name__ == "__main__":
    run()
