"""`python -m jaxvae`: the `jaxvae` command."""

from jaxvae.cli import run

run()
