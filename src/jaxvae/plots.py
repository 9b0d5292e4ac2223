"""The figures of a run: reconstructions, samples, training curve, latent manifold and scatter.

Image grids are drawn with Pillow, pixel for pixel; the scatter and the curve with matplotlib's
object-oriented API on its Agg canvas (no pyplot), imported only when drawn, or by
`import_in_background` while a run trains.
"""

import functools
import math
import threading
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, cast

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxvae.builder import build_binarization, build_objective
from jaxvae.config import RunConfig
from jaxvae.data import Dataset
from jaxvae.deep import DownwardPrior
from jaxvae.evaluate import class_samples, decoded_means, posterior_moments, prior_draws
from jaxvae.keys import DataSeed, Run, run_key
from jaxvae.model import LatentModel
from jaxvae.objectives import Elbo, Objective
from jaxvae.runs import best_validation, validation_key
from jaxvae.semi_train import classify
from jaxvae.semisupervised import SemiSupervisedVAE, classification_errors

if TYPE_CHECKING:  # matplotlib is imported on a thread of its own (`import_in_background`)
    from matplotlib.ticker import MaxNLocator


def is_image(shape: tuple[int, ...]) -> bool:
    """(H, W) greyscale or (H, W, C) with C in 1 or 3."""
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))


GAP = 1  # grid pixels between the tiles of an image grid
BORDER = 0.5  # the grey of the gaps and of empty tiles: neither a black nor a white pixel
DPI = 100
GRID_PIXELS = 800  # an image grid is drawn at about this many pixels along its longer side
TITLE_PIXELS = 30  # the band above it that holds its title
AXIS_PIXELS = 60  # the bands below and left of a grid with axes, for its ticks and their labels
MIN_WIDTH = 640  # pixels, so that a title fits above a narrow grid
ROWS = 1000  # figures encode and decode in blocks of this many rows, so they share two compiled programs


def image_grid(x: np.ndarray, shape: tuple[int, ...], cols: int) -> np.ndarray:
    """Tile flat images x (n, d) row by row into a grid of `cols` columns, clipped to [0, 1].

    Tiles are GAP pixels apart; gaps and the empty tiles of a short last row are BORDER grey.
    Returns (rows * (H + GAP) - GAP, cols * (W + GAP) - GAP[, C]), rows = ceil(n / cols).
    """
    n = len(x)
    rows = -(-n // cols)
    h, w = shape[:2]
    c = shape[2] if len(shape) == 3 else 1
    tiles = np.full((rows * cols, h + GAP, w + GAP, c), BORDER, np.float32)
    tiles[:n, :h, :w] = np.clip(np.asarray(x, np.float32), 0, 1).reshape(n, h, w, c)
    grid = tiles.reshape(rows, cols, h + GAP, w + GAP, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (h + GAP), cols * (w + GAP), c)[:-GAP, :-GAP]
    return grid[..., 0] if c == 1 else grid


def _by_blocks(fn, a: np.ndarray) -> np.ndarray:
    """fn applied to `a` (n, ...) in blocks of ROWS rows, the last one padded with zero rows: (n, ...).
    Only that block is copied (a padded copy of a test set would cost its size in memory again)."""
    a = np.asarray(a, np.float32)
    out = []
    for i in range(0, len(a), ROWS):
        block = a[i : i + ROWS]
        padded = np.pad(block, [(0, ROWS - len(block))] + [(0, 0)] * (a.ndim - 1))
        out.append(np.asarray(fn(padded))[: len(block)])
    return np.concatenate(out)


def _posterior_means(vae: LatentModel, x: np.ndarray) -> np.ndarray:
    """E[z|x] for x (n, d): (n, k)."""
    return _by_blocks(lambda xb: posterior_moments(vae, xb)[0], x)


def _decoded(vae: LatentModel, z: np.ndarray) -> np.ndarray:
    """The mean of p(x|z) for z (n, k): (n, d)."""
    return _by_blocks(lambda zb: decoded_means(vae, zb), z)


def _decoded_top(vae: LatentModel, z_top: np.ndarray) -> np.ndarray:
    """The mean of p(x|z) for z_L (n, k_L) of the top layer, every layer below at its conditional mean
    E[z_l | z_{l+1}] (z itself for a one-layer model): (n, d)."""
    prior = vae.prior()
    if not isinstance(prior, DownwardPrior):  # one layer
        return _decoded(vae, z_top)
    return _decoded(vae, np.asarray(prior.means_below(jax.numpy.asarray(z_top))))


def _top_coordinates(vae: LatentModel) -> tuple[str, str]:
    """How the figures name the top layer's first two coordinates: z1 and z2, or z_L[1] and z_L[2] for a deep
    model of L layers."""
    if len(vae.sizes) == 1:
        return "z1", "z2"
    return f"z_{len(vae.sizes)}[1]", f"z_{len(vae.sizes)}[2]"


@functools.cache
def import_in_background() -> None:
    """Start importing matplotlib (0.3 s) on a thread of its own, once per process. Training calls this
    once an epoch is running, when the interpreter would only wait, so that the figures at the end find
    matplotlib loaded; a figure drawn before the import ends waits for it."""
    threading.Thread(target=_import_matplotlib, name="import matplotlib").start()


def _import_matplotlib():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return Figure, FigureCanvasAgg


def _figure(size: tuple[float, float], **margins: float):
    """A matplotlib figure of `size` inches on the Agg canvas. With `margins` (`subplots_adjust`'s left,
    bottom, right, top, hspace, as fractions) the axes sit there; without, a layout engine places them,
    which costs about 0.15 s a figure."""
    Figure, FigureCanvasAgg = _import_matplotlib()
    fig = Figure(figsize=size, dpi=DPI, layout=None if margins else "constrained")
    if margins:
        fig.subplots_adjust(**margins)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, pil_kwargs={"compress_level": 1})  # as _save_grid: 3 times faster than the default 6
    return path


def _save_grid(grid: np.ndarray, title: str, path: Path, axes: tuple | None = None) -> Path:
    """A PNG of `grid` below `title`, each grid pixel drawn as a k x k block, k a whole number that brings
    the longer side near GRID_PIXELS: no resampling, so every image pixel stays sharp and every gap shows.

    With `axes` = (x ticks, y ticks, x label, y label), each tick a pair (grid pixel, text), the grid gets
    tick marks and their labels below it and to its left, and the axis labels."""
    from PIL import Image, ImageDraw, ImageFont

    k = max(1, round(GRID_PIXELS / max(grid.shape[:2])))
    pixels = np.round(np.repeat(np.repeat(grid, k, axis=0), k, axis=1) * 255).astype(np.uint8)
    h, w = pixels.shape[:2]
    left, bottom = (AXIS_PIXELS, AXIS_PIXELS) if axes else (0, 0)
    width = max(w + left, MIN_WIDTH)
    x0, y0 = left + (width - left - w) // 2, TITLE_PIXELS  # the grid's top left corner
    image = Image.new("RGB", (width, y0 + h + bottom), "white")
    image.paste(Image.fromarray(pixels).convert("RGB"), (x0, y0))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=TITLE_PIXELS // 2)
    draw.text((width / 2, TITLE_PIXELS / 2), title, fill="black", font=font, anchor="mm")
    if axes:
        x_ticks, y_ticks, x_label, y_label = axes
        for pos, text in x_ticks:
            x = x0 + (pos + 0.5) * k
            draw.line([(x, y0 + h), (x, y0 + h + 5)], fill="black")
            draw.text((x, y0 + h + 7), text, fill="black", font=font, anchor="ma")
        for pos, text in y_ticks:
            y = y0 + (pos + 0.5) * k
            draw.line([(x0 - 5, y), (x0, y)], fill="black")
            draw.text((x0 - 7, y), text, fill="black", font=font, anchor="rm")
        draw.text((x0 + w / 2, y0 + h + bottom - 4), x_label, fill="black", font=font, anchor="md")
        draw.text((x0 - left + 4, y0 - 4), y_label, fill="black", font=font, anchor="ld")
    image.save(path, compress_level=1)  # 3 times faster than the default 6, files about as small
    return path


def reconstructions(vae: LatentModel, x: np.ndarray, shape, path: Path, n: int = 10) -> Path:
    """Inputs (top row) above the mean of p(x|z) at z = the posterior mean (bottom row)."""
    x = x[:n]
    recon = _decoded(vae, _posterior_means(vae, x))
    grid = image_grid(np.concatenate([x, recon]), shape, len(x))
    return _save_grid(grid, "test inputs (top) and reconstructions, mean of p(x|z = posterior mean) (bottom)", path)


def samples(vae: LatentModel, shape, path: Path, *, key: jax.Array, n: int = 64) -> Path:
    """Means of p(x|z) for z drawn from the model's prior p(z)."""
    z = prior_draws(vae, key, n)
    return sample_grid(_decoded(vae, np.asarray(z)), shape, "samples: mean of p(x|z), z ~ p(z)", path)


def class_by_style(vae: LatentModel, x: np.ndarray, y: np.ndarray, shape, path: Path, n: int = 8) -> Path:
    """Kingma et al. 2014's figure for a model conditioned on labels: the top row the first n images x_j of x
    (labels y), below it row y the mean of p(x | z_j, y), z_j = E[z | x_j, y_j] the style of x_j, under
    every class y."""
    x, y = np.asarray(x[:n], np.float32), np.asarray(y[:n])
    classes = vae.condition_dim
    eye = np.eye(classes, dtype=np.float32)
    styles = np.asarray(posterior_moments(vae, x, c=jax.numpy.asarray(eye[y]))[0])
    z = np.tile(styles, (classes, 1))  # row-major: class 0's n styles, then class 1's, ...
    decoded = decoded_means(vae, jax.numpy.asarray(z), c=jax.numpy.asarray(np.repeat(eye, len(x), axis=0)))
    grid = image_grid(np.concatenate([x, np.asarray(decoded)]), shape, cols=len(x))
    return _save_grid(grid, "class by style: test images (top), their z decoded under each class", path)


def sample_grid(x: np.ndarray, shape, title: str, path: Path) -> Path:
    """A PNG of the images x (n, d) in a near-square grid below `title`."""
    return _save_grid(image_grid(x, shape, cols=int(np.ceil(np.sqrt(len(x))))), title, path)


def class_grid(vae: LatentModel, shape, path: Path, *, key: jax.Array, per_class: int = 8) -> Path:
    """A model conditioned on labels: row y holds the means of p(x | z, y) for `per_class` draws z ~ p(z | y)."""
    labels = np.repeat(np.arange(vae.condition_dim), per_class)
    _, x = class_samples(vae, jax.numpy.asarray(labels), key)
    grid = image_grid(np.asarray(x), shape, cols=per_class)
    return _save_grid(grid, "class samples: row y, mean of p(x|z, y), z ~ p(z|y)", path)


def manifold(vae: LatentModel, shape, path: Path, n: int | None = None) -> Path:
    """Kingma and Welling's 2-D manifold: the mean of p(x|z) on an n x n grid of z whose coordinates are the
    5% to 95% quantiles of N(0, 1), z1 left to right and z2 bottom to top; ticks label about six tiles'
    coordinates per axis.

    n defaults to 20, or 12 for images under 16 pixels high (8x8 digits), so that each stays legible.
    """
    n = n or (20 if shape[0] >= 16 else 12)
    q = np.array([NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, n)])  # no scipy import: 0.2 s
    z = np.stack(np.meshgrid(q, q[::-1]), axis=-1).reshape(-1, 2).astype(np.float32)
    grid = image_grid(_decoded_top(vae, z), shape, n)
    h, w = shape[:2]
    tiles = range(0, n, max(1, n // 6))
    x_ticks = [(i * (w + GAP) + (w - 1) / 2, f"{q[i]:.2f}") for i in tiles]
    y_ticks = [(i * (h + GAP) + (h - 1) / 2, f"{q[n - 1 - i]:.2f}") for i in tiles]
    first, second = _top_coordinates(vae)
    x_label = f"{first} (the coordinates of the grid are the 5% to 95% quantiles of N(0, 1))"
    title = f"latent space decoded: the mean of p(x|z) on a {n} x {n} grid of z"
    if len(vae.sizes) > 1:
        title = f"the mean of p(x|z) on a {n} x {n} grid of the top layer, the layers below at their conditional means"
    return _save_grid(grid, title, path, (x_ticks, y_ticks, x_label, second))


def latent_scatter(
    vae: LatentModel, x: np.ndarray, y: np.ndarray | None, path: Path, names: tuple[str, ...] = ()
) -> Path:
    """Posterior means of x (of the top layer's z_L for a deep model) coloured by their labels y, named in the
    legend by `names` (label i is names[i]) when given; for k > 2 projected on their first two principal
    components."""
    mu = _posterior_means(vae, x)[:, -vae.sizes[-1] :]
    label = _top_coordinates(vae)
    if mu.shape[1] > 2:
        centred = mu - mu.mean(0)
        mu = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        label = ("principal component 1", "principal component 2")
    elif mu.shape[1] == 1:
        mu, label = np.concatenate([mu, np.zeros_like(mu)], 1), (label[0], "")
    classes = np.unique(y) if y is not None else None
    legend = classes is not None and len(classes) <= 10
    fig = _figure((7.6 if legend else 7, 6), left=0.11, bottom=0.09, right=0.84 if legend else 0.97, top=0.94)
    ax = fig.add_subplot()
    size = 4 if len(mu) <= 1000 else 2  # points across: larger where there are few
    if classes is not None and legend:  # a colour per class, in a legend; markers draw 2 times faster than a scatter
        for i, c in enumerate(classes):
            name = names[c] if names else str(c)
            ax.plot(mu[y == c, 0], mu[y == c, 1], "o", ms=size, mew=0, color=f"C{i}", label=name)
        ax.legend(
            title="class" if names else "label",
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            markerscale=6 / size,
            frameon=False,
        )
    else:
        points = ax.scatter(mu[:, 0], mu[:, 1], c=y, s=size**2)
        if y is not None:
            fig.colorbar(points, ax=ax, label="label")
    top = f"the top layer's posterior means E[z_{len(vae.sizes)} | x]"
    title = "test set: " + ("posterior means E[z|x]" if len(vae.sizes) == 1 else top)
    ax.set(xlabel=label[0], ylabel=label[1], title=title)
    return _save(fig, path)


def interpolations(vae: LatentModel, x: np.ndarray, shape, path: Path, pairs: int = 8, steps: int = 10) -> Path:
    """Rows of decoded means along straight lines between the posterior means of two test images.

    Row r runs from image 2r (left) to image 2r + 1 (right) in latent space, z = (1 - t) mu_a + t mu_b.
    """
    pairs = min(pairs, len(x) // 2)
    mu = _posterior_means(vae, x[: 2 * pairs])
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    z = (1 - t) * mu[0::2, None] + t * mu[1::2, None]  # (pairs, steps, k)
    images = _decoded(vae, z.reshape(-1, vae.latent_dim))
    grid = image_grid(images, shape, steps)
    return _save_grid(grid, "interpolations between test images: decoded means along lines in z", path)


def _span_later_epochs(ax, runs: list[list[dict]], keys) -> list[list[dict]]:
    """Where a run has more than 20 epochs, set ax's y axis to the range of the `keys` of every run's records
    from the 10% mark of its epochs on (the first epochs, often hundreds of nats lower, would flatten the
    rest), and return those records; else leave the axis and return []."""
    if max(map(len, runs)) <= 20:
        return []
    later = [records[len(records) // 10 :] for records in runs]
    values = [r[key] for records in later for r in records for key in keys if key in r]
    low, high = min(values), max(values)
    pad = 0.05 * (high - low) or 1.0
    ax.set_ylim(low - pad, high + pad)
    return later


def training_curve(metrics: list[dict], path: Path, objective: Objective | None = None) -> Path:
    """A run's train, test and (where it has them) validation ELBO per epoch, from its metrics.jsonl records,
    and the validation value of the bound `objective` trains (`Objective.bound_key`; the ELBO without one)
    where that is another, the KL warm-up's epochs shaded and the epoch of the best validation bound marked;
    past 20 epochs the y axis spans the epochs from the 10% mark on (`_span_later_epochs`)."""
    objective = Elbo() if objective is None else objective
    bound, name = objective.bound_key, objective.name
    fig = _figure((6, 4), left=0.15, bottom=0.12, right=0.97, top=0.92)
    ax = fig.add_subplot()
    dots = {"marker": "o", "ms": 5} if len(metrics) <= 20 else {}  # so that a run of one epoch shows
    bound_name = "U(x)" if any("test_classification_error" in m for m in metrics) else "ELBO"  # M2: U(x)
    curves = {
        "train_elbo": f"train {bound_name} (during the epoch)",
        "test_elbo": f"test {bound_name}",
        validation_key("elbo"): f"validation {bound_name}",
    }
    if bound != "elbo":
        curves[validation_key(bound)] = f"validation {name}"
    for key, label in curves.items():
        records = [m for m in metrics if key in m]
        if records:
            ax.plot([m["epoch"] for m in records], [m[key] for m in records], **dots, label=label)
    warmup = [m["epoch"] for m in metrics if m.get("beta", 1.0) < 1]
    if warmup:
        ax.axvspan(min(warmup) - 0.5, max(warmup) + 0.5, color="0.92", label="KL warm-up (beta < 1)")
    best, best_epoch = best_validation(metrics, bound)
    if math.isfinite(best):
        label = f"best validation {name}, epoch {best_epoch}"
        ax.axvline(best_epoch, color="0.4", ls="--", lw=1, label=label)
    title = "training curve"
    if later := _span_later_epochs(ax, [metrics], curves):
        title += f" (y axis: the range of epochs {later[0][0]['epoch']} to {later[0][-1]['epoch']})"
    cast("MaxNLocator", ax.xaxis.get_major_locator()).set_params(integer=True, min_n_ticks=1)  # whole epochs
    ax.set(xlabel="epoch", ylabel=f"{bound_name if bound == 'elbo' else 'bound'} per example (nats)", title=title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def training_curves(metrics: dict[str, list[dict]], path: Path) -> Path:
    """The training curves of a sweep's members: test ELBO (solid) and train ELBO (dotted) per epoch, one
    colour per member; past 20 epochs the y axis spans the epochs from the 10% mark on (`_span_later_epochs`)."""
    fig = _figure((8, 5))
    ax = fig.add_subplot()
    for name, records in metrics.items():
        epochs = [r["epoch"] for r in records]
        (line,) = ax.plot(epochs, [r["test_elbo"] for r in records], label=name)
        ax.plot(epochs, [r["train_elbo"] for r in records], linestyle=":", color=line.get_color())
    later = _span_later_epochs(ax, list(metrics.values()), ("test_elbo", "train_elbo"))
    title = "training curves" + (" (y axis: from the 10% mark of the epochs on)" if later else "")
    ax.set(xlabel="epoch", ylabel="ELBO per example (nats): test solid, train dotted", title=title)
    ax.legend(fontsize="small", ncol=max(1, len(metrics) // 8))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion(counts: np.ndarray, path: Path, names: tuple[str, ...] = ()) -> Path:
    """The confusion matrix counts (C, C), row the true class, column the predicted one, each row shaded by its
    fractions and each cell labelled with its count; the title gives the error. `names`: the classes' names."""
    classes = counts.shape[0]
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = _figure((6, 5.4), left=0.14, bottom=0.12, right=0.96, top=0.92)
    ax = fig.add_subplot()
    ax.imshow(counts / totals, cmap="Blues", vmin=0, vmax=1)
    if classes <= 20:
        for (i, j), count in np.ndenumerate(counts):
            if count:
                colour = "white" if count / totals[i, 0] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize="small", color=colour)
    labels = list(names) if len(names) == classes else [str(c) for c in range(classes)]
    ticks = range(classes)
    ax.set_xticks(ticks, labels, rotation=90 if max(map(len, labels)) > 2 else 0)
    ax.set_yticks(ticks, labels)
    error = 1 - np.trace(counts) / max(counts.sum(), 1)
    ax.set(xlabel="predicted class, argmax q(y|x)", ylabel="true class", title=f"test confusion: error {error:.2%}")
    return _save(fig, path)


def m2_figures(model: SemiSupervisedVAE, data: Dataset, config: RunConfig, folder: Path) -> list:
    """The figures of M2 (a run with labels), each a function that draws one: the test confusion matrix (the
    test set binarized as in training's evaluation) and, for images, its class samples and class by style."""
    figures = []
    if data.y_test is not None and len(data.x_test):
        x, y = build_binarization(config.train).held_out(data.x_test, DataSeed.TEST_BINARIZATION), data.y_test
        counts = np.asarray(classification_errors(y, classify(model, x), model.classes)["confusion"])
        figures.append(lambda: confusion(counts, folder / "confusion.png", data.classes))
        if is_image(data.shape):
            figures.append(lambda: class_by_style(model.vae, data.x_test, y, data.shape, folder / "class_by_style.png"))
    if is_image(data.shape):
        key = run_key(config.train.seed, Run.SAMPLES_FIGURE)
        figures.append(lambda: class_grid(model.vae, data.shape, folder / "class_samples.png", key=key))
    return figures


def write_figures(
    vae: LatentModel | SemiSupervisedVAE,
    data: Dataset,
    config: RunConfig,
    folder: Path,
    metrics: list[dict],
    *,
    progress: bool = False,
) -> list[Path]:
    """Every figure of a run (of M2's parts `vae`, `m2_figures`) into `folder`; image figures only for
    image-shaped data. gaps.png, which `jaxvae evaluate --gaps` draws, is drawn again from its gaps.npz when
    it shows the model of the last epoch of `metrics`, and removed (with gaps.npz) when it shows an older one.
    With `progress`, a bar over the figures (tqdm, with the time left) on stderr."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = []  # each draws one figure and returns its path
    if metrics:
        figures.append(lambda: training_curve(metrics, folder / "training_curve.png", build_objective(config.train)))
    conditional = config.model.condition_dim > 0
    if isinstance(vae, SemiSupervisedVAE):
        figures += m2_figures(vae, data, config, folder)
    elif conditional:  # so far its curves, and of a model conditioned on labels its classes' samples and styles
        if is_image(data.shape) and config.train.condition == "label":
            key = run_key(config.train.seed, Run.SAMPLES_FIGURE)
            figures.append(lambda: class_grid(vae, data.shape, folder / "class_samples.png", key=key))
            if data.y_test is not None and len(data.x_test):
                x, y = data.x_test, data.y_test
                figures.append(lambda: class_by_style(vae, x, y, data.shape, folder / "class_by_style.png"))
    else:
        figures.append(
            lambda: latent_scatter(vae, data.x_test, data.y_test, folder / "latent_scatter.png", data.classes)
        )
        if is_image(data.shape):
            key = run_key(config.train.seed, Run.SAMPLES_FIGURE)
            figures.append(lambda: reconstructions(vae, data.x_test, data.shape, folder / "reconstructions.png"))
            figures.append(lambda: samples(vae, data.shape, folder / "samples.png", key=key))
            if len(data.x_test) >= 2:
                figures.append(lambda: interpolations(vae, data.x_test, data.shape, folder / "interpolations.png"))
            if vae.sizes[-1] == 2:
                figures.append(lambda: manifold(vae, data.shape, folder / "latent_manifold.png"))
    bar = tqdm(figures, desc=f"figures of {folder.parent.name}", unit="figure", disable=not progress, leave=False)
    written = [draw() for draw in bar]
    gaps = _gaps_again(folder, metrics[-1]["epoch"] if metrics else 0)
    return written + ([gaps] if gaps else [])


GAPS_FIGURE = "gaps.png"
GAPS_VALUES = "gaps.npz"  # the values gaps.png shows, and the epoch of the model they are of
GAPS_KEYS = ("log_px", "elbo_optimized", "elbo", "approximation_gap", "amortization_gap")  # what it draws


def gaps_figure(gaps: dict, folder: Path, reference: str, epoch: int) -> Path:
    """folder/gaps.png of `gaps` (`gaps.inference_gaps` of the model at `epoch`, `reference` naming its log
    p(x)), and beside it gaps.npz, the values drawn and the epoch, so that `write_figures` can draw it again."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / GAPS_VALUES, "wb") as f:
        np.savez(f, **{k: gaps[k] for k in GAPS_KEYS}, reference=reference, epoch=epoch)
    return inference_gaps(gaps, folder / GAPS_FIGURE, reference)


def _gaps_again(folder: Path, epoch: int) -> Path | None:
    """gaps.png drawn again from gaps.npz when they are of the model at `epoch`; otherwise (an older
    model's, or a figure without its values) both are removed, and None."""
    try:
        with np.load(folder / GAPS_VALUES, allow_pickle=False) as saved:
            if int(saved["epoch"]) == epoch:
                values = {k: saved[k] for k in GAPS_KEYS}
                return inference_gaps(values, folder / GAPS_FIGURE, str(saved["reference"]))
    except (OSError, KeyError, ValueError):  # no gaps.npz, or not one of ours
        pass
    for stale in (folder / GAPS_FIGURE, folder / GAPS_VALUES):
        stale.unlink(missing_ok=True)
    return None


def inference_gaps(gaps: dict, path: Path, reference: str) -> Path:
    """Per example, sorted by log p(x): log p(x), ELBO(q*) and ELBO(q) (top), and the approximation and
    amortization gaps stacked (bottom), from `gaps.inference_gaps`; `reference` names the log p(x) used."""
    order = np.argsort(gaps["log_px"])
    rank = np.arange(len(order))
    approximation, amortization = gaps["approximation_gap"][order], gaps["amortization_gap"][order]
    fig = _figure((9, 7))
    top = fig.add_subplot(2, 1, 1)
    bottom = fig.add_subplot(2, 1, 2, sharex=top)
    top.plot(rank, gaps["log_px"][order], "k-", lw=1, label=f"log p(x) ({reference})")
    top.plot(rank, gaps["elbo_optimized"][order], "o", mfc="none", ms=4, label="ELBO(q*), q* fitted to each x")
    top.plot(rank, gaps["elbo"][order], "x", ms=4, label="ELBO(q), the encoder's q(z|x)")
    top.set(ylabel="nats per example", title="inference gaps per example (Cremer et al. 2018)")
    top.legend()
    bottom.bar(rank, approximation, width=1.0, label="approximation gap log p(x) - ELBO(q*)")
    bottom.bar(rank, amortization, width=1.0, bottom=approximation, label="amortization gap ELBO(q*) - ELBO(q)")
    low, high = (
        float(f(np.concatenate([approximation, approximation + amortization, [0.0]]))) for f in (np.min, np.max)
    )
    if max(high, -low) > SYMLOG_ABOVE:  # linear below 1 nat, logarithmic above: a few gaps are huge
        bottom.set_yscale("symlog", linthresh=1.0)
        ticks = _symlog_ticks(low, high)
        bottom.set_yticks(ticks, [f"{t:g}" for t in ticks])
        bottom.set_ylabel("gap (nats; log scale above 1)")
    else:
        bottom.set_ylabel("gap (nats)")
    bottom.set_xlabel("example, sorted by log p(x)")
    bottom.xaxis.set_major_locator(_integer_locator())  # examples are whole numbers
    bottom.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=2, frameon=False, borderaxespad=0.2)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def gradient_snr(table: dict, path: Path, repetitions: int, batch: int) -> Path:
    """SNR against K, log-log, one line per estimator (the mean over components, +- its Monte Carlo s.e.;
    dashed, the median), the encoder's gradient left and the decoder's right, from `snr.snr_table` (IWAE's
    estimators share the decoder's gradient, so their decoder lines coincide)."""
    fig = _figure((10, 4.2))
    for i, side in enumerate(("encoder", "decoder")):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, (name, by_k) in enumerate(table.items()):
            ks = sorted(by_k)
            colour = f"C{j}"
            mean, se = ([by_k[k][f"{side}{s}"] for k in ks] for s in ("", "_se"))
            ax.errorbar(ks, mean, yerr=se, fmt="o-", color=colour, capsize=3, label=f"{name} (mean)")
            ax.plot(ks, [by_k[k][f"{side}_median"] for k in ks], "--", color=colour, label=f"{name} (median)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        title = "encoder gradient" if side == "encoder" else "decoder gradient (the same for every estimator)"
        ax.set(xlabel="K, importance samples", ylabel="SNR |E[g]| / std(g)", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"IWAE gradient signal-to-noise over {repetitions} draws on a batch of {batch} test examples")
    return _save(fig, path)


SYMLOG_ABOVE = 10.0  # nats: a gaps panel whose bars reach beyond this is drawn on a symlog scale


def _symlog_ticks(low: float, high: float) -> list[float]:
    """Ticks 0, +-0.5, +-1, 2, 5, 10, 20, 50, ... reaching just past [low, high], labelled as plain numbers."""
    steps = [0.5] + [m * 10.0**e for e in range(12) for m in (1, 2, 5)]
    up = [t for t in steps if t < high] + [next(t for t in steps if t >= high)] if high > 0 else []
    down = [-t for t in steps if t < -low] + [-next(t for t in steps if t >= -low)] if low < 0 else []
    return sorted([*down, 0.0, *up])


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)
