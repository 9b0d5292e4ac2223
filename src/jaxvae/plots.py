"""The figures of a run: reconstructions, samples, training curve, latent manifold and scatter."""

from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import ndtri  # noqa: E402  (the inverse normal CDF; lighter to import than scipy.stats)

from jaxvae.config import RunConfig  # noqa: E402
from jaxvae.data import Dataset  # noqa: E402
from jaxvae.evaluate import decoded_means, posterior_moments  # noqa: E402
from jaxvae.model import VAE  # noqa: E402


def is_image(shape: tuple[int, ...]) -> bool:
    """(H, W) greyscale or (H, W, C) with C in 1 or 3."""
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))


def image_grid(x: np.ndarray, shape: tuple[int, ...], cols: int) -> np.ndarray:
    """Tile flat images x (n, d) into one (rows * H, cols * W[, C]) array, clipped to [0, 1]."""
    n = len(x)
    rows = -(-n // cols)
    h, w = shape[:2]
    tiles = np.zeros((rows * cols, *shape), np.float32)
    tiles[:n] = np.clip(np.asarray(x), 0, 1).reshape(n, *shape)
    tiles = tiles.reshape(rows, cols, h, w, -1).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, -1)
    return tiles[..., 0] if tiles.shape[-1] == 1 else tiles


def _show(ax, grid: np.ndarray, title: str) -> None:
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def reconstructions(vae: VAE, x: np.ndarray, shape, path: Path, n: int = 10) -> Path:
    """Inputs (top row) above the mean of p(x|z) at z = the posterior mean (bottom row)."""
    x = x[:n]
    recon = decoded_means(vae, posterior_moments(vae, x)[0])
    fig, axes = plt.subplots(2, 1, figsize=(n, 2.4))
    _show(axes[0], image_grid(x, shape, n), "test inputs")
    _show(axes[1], image_grid(np.asarray(recon), shape, n), "reconstructions: mean of p(x|z = posterior mean)")
    return _save(fig, path)


def samples(vae: VAE, shape, path: Path, *, key: jax.Array, n: int = 64) -> Path:
    """Means of p(x|z) for z drawn from the model's prior p(z)."""
    z = vae.prior().sample(key, (n,))
    grid = image_grid(np.asarray(decoded_means(vae, z)), shape, cols=int(np.ceil(np.sqrt(n))))
    fig, ax = plt.subplots(figsize=(6, 6))
    _show(ax, grid, "samples: mean of p(x|z), z ~ p(z)")
    return _save(fig, path)


def manifold(vae: VAE, shape, path: Path, n: int = 20) -> Path:
    """Kingma and Welling's 2-D manifold: a grid of quantiles pushed through the inverse normal CDF."""
    q = ndtri(np.linspace(0.05, 0.95, n))
    z = np.stack(np.meshgrid(q, q[::-1]), axis=-1).reshape(-1, 2).astype(np.float32)
    fig, ax = plt.subplots(figsize=(8, 8))
    _show(ax, image_grid(np.asarray(decoded_means(vae, z)), shape, n), "latent manifold: z = Phi^-1(grid)")
    return _save(fig, path)


def latent_scatter(vae: VAE, x: np.ndarray, y: np.ndarray | None, path: Path) -> Path:
    """Posterior means of x; for k > 2 projected on their first two principal components."""
    mu = np.asarray(posterior_moments(vae, x)[0])
    label = ("z1", "z2")
    if mu.shape[1] > 2:
        centred = mu - mu.mean(0)
        mu = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        label = ("principal component 1", "principal component 2")
    elif mu.shape[1] == 1:
        mu, label = np.concatenate([mu, np.zeros_like(mu)], 1), ("z1", "")
    fig, ax = plt.subplots(figsize=(7, 6))
    points = ax.scatter(mu[:, 0], mu[:, 1], c=y, s=4, cmap="tab10" if y is not None else None)
    if y is not None:
        fig.colorbar(points, ax=ax, label="label")
    ax.set(xlabel=label[0], ylabel=label[1], title="test set: posterior means E[z|x]")
    return _save(fig, path)


def interpolations(vae: VAE, x: np.ndarray, shape, path: Path, pairs: int = 8, steps: int = 10) -> Path:
    """Rows of decoded means along straight lines between the posterior means of two test images.

    Row r runs from image 2r (left) to image 2r + 1 (right) in latent space, z = (1 - t) mu_a + t mu_b.
    """
    pairs = min(pairs, len(x) // 2)
    mu = np.asarray(posterior_moments(vae, x[: 2 * pairs])[0])
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    z = (1 - t) * mu[0::2, None] + t * mu[1::2, None]  # (pairs, steps, k)
    images = np.asarray(decoded_means(vae, z.reshape(-1, vae.latent_dim)))
    fig, ax = plt.subplots(figsize=(steps, 1.1 * pairs + 0.4))
    _show(ax, image_grid(images, shape, steps), "interpolations between test images: decoded means along lines in z")
    return _save(fig, path)


def training_curve(metrics: list[dict], path: Path) -> Path:
    epochs = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [m["train_elbo"] for m in metrics], label="train (bound during the epoch)")
    ax.plot(epochs, [m["test_elbo"] for m in metrics], label="test ELBO")
    ax.set(xlabel="epoch", ylabel="ELBO per example (nats)", title="training curve")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def write_figures(vae: VAE, data: Dataset, config: RunConfig, folder: Path, metrics: list[dict]) -> list[Path]:
    """Every figure of a run into `folder`; image figures only for image-shaped data."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [training_curve(metrics, folder / "training_curve.png")] if metrics else []
    written.append(latent_scatter(vae, data.x_test, data.y_test, folder / "latent_scatter.png"))
    if is_image(data.shape):
        key = jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 3)
        written.append(reconstructions(vae, data.x_test, data.shape, folder / "reconstructions.png"))
        written.append(samples(vae, data.shape, folder / "samples.png", key=key))
        if len(data.x_test) >= 2:
            written.append(interpolations(vae, data.x_test, data.shape, folder / "interpolations.png"))
        if vae.latent_dim == 2:
            written.append(manifold(vae, data.shape, folder / "latent_manifold.png"))
    return written


def inference_gaps(gaps: dict, path: Path, reference: str) -> Path:
    """Per example, sorted by log p(x): log p(x), ELBO(q*) and ELBO(q) (top), and the approximation and
    amortization gaps stacked (bottom), from `gaps.inference_gaps`; `reference` names the log p(x) used."""
    order = np.argsort(gaps["log_px"])
    rank = np.arange(len(order))
    approximation, amortization = gaps["approximation_gap"][order], gaps["amortization_gap"][order]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    top.plot(rank, gaps["log_px"][order], "k-", lw=1, label=f"log p(x) ({reference})")
    top.plot(rank, gaps["elbo_optimized"][order], "o", mfc="none", ms=4, label="ELBO(q*), q* fitted to each x")
    top.plot(rank, gaps["elbo"][order], "x", ms=4, label="ELBO(q), the encoder's q(z|x)")
    top.set(ylabel="nats per example", title="inference gaps per example (Cremer et al. 2018)")
    top.legend()
    bottom.bar(rank, approximation, width=1.0, label="approximation gap log p(x) - ELBO(q*)")
    bottom.bar(rank, amortization, width=1.0, bottom=approximation, label="amortization gap ELBO(q*) - ELBO(q)")
    bottom.set_yscale("symlog", linthresh=1.0)  # linear below 1 nat, logarithmic above: a few gaps are huge
    bottom.set(xlabel="example, sorted by log p(x)", ylabel="gap (nats; log scale above 1)")
    bottom.legend()
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _save(fig, path)
