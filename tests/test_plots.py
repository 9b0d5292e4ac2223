"""Image grids: tiles apart, in order, clipped; drawn to the PNG pixel for pixel. Expected arrays are
written out by hand."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from jaxvae import plots
from jaxvae.config import ModelConfig, RunConfig, TrainConfig

G = plots.BORDER  # the grey of gaps and empty tiles
ONE_LAYER = SimpleNamespace(sizes=(2,))  # what the figures read of a one-layer model with k = 2


def test_image_grid_tiles_images_apart_row_by_row():
    a = [[0.0, 0.1], [0.2, 0.3]]
    b = [[0.4, 0.5], [0.6, 0.7]]
    c = [[-1.0, 2.0], [0.8, 1.0]]  # outside [0, 1]: clipped
    x = np.array([a, b, c]).reshape(3, 4)
    expected = np.array(
        [
            [0.0, 0.1, G, 0.4, 0.5],
            [0.2, 0.3, G, 0.6, 0.7],
            [G, G, G, G, G],
            [0.0, 1.0, G, G, G],
            [0.8, 1.0, G, G, G],
        ]
    )
    grid = plots.image_grid(x, (2, 2), cols=2)
    np.testing.assert_allclose(grid, expected, atol=1e-7)


def test_image_grid_of_colour_images():
    red, blue = [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]  # 1 x 1 RGB images
    x = np.array([red, blue]).reshape(2, 3)
    expected = np.array([[[1.0, 0.0, 0.0]], [[G, G, G]], [[0.0, 0.0, 1.0]]])
    np.testing.assert_allclose(plots.image_grid(x, (1, 1, 3), cols=1), expected)


def test_saved_grid_shows_every_pixel_as_a_whole_block(tmp_path):
    """No resampling: the PNG holds each grid pixel as a k x k block of its grey level."""
    rng = np.random.default_rng(0)
    grid = plots.image_grid(rng.uniform(size=(6, 64)), (8, 8), cols=3)  # 17 x 26
    path = plots._save_grid(grid, "a title", tmp_path / "grid.png")
    png = np.asarray(Image.open(path).convert("L"), np.float64)
    k = round(plots.GRID_PIXELS / 26)
    h, w = 17 * k, 26 * k
    left = (png.shape[1] - w) // 2
    assert png.shape[0] == h + plots.TITLE_PIXELS
    drawn = png[-h:, left : left + w]
    np.testing.assert_allclose(drawn, np.kron(grid, np.ones((k, k))) * 255, atol=0.5)  # 8 bits, rounded


def test_blocks_are_all_one_size_and_cover_every_row_in_order():
    """Figures encode and decode in blocks of ROWS rows, so one compiled program serves every figure."""
    a = np.random.default_rng(1).normal(size=(2 * plots.ROWS + 7, 3)).astype(np.float32)
    shapes = []

    def fn(block):
        shapes.append(block.shape)
        return block[:, ::-1] * 2

    np.testing.assert_array_equal(plots._by_blocks(fn, a), a[:, ::-1] * 2)
    assert shapes == [(plots.ROWS, 3)] * 3


@pytest.mark.slow
def test_a_figure_drawn_while_matplotlib_is_imported_in_the_background_waits_for_it(tmp_path):
    """In a fresh process (matplotlib not yet imported): start the background import, draw at once."""
    path = tmp_path / "curve.png"
    code = (
        "import sys\nfrom jaxvae import plots\nplots.import_in_background()\n"
        f"plots.training_curve([{{'epoch': 1, 'train_elbo': -3.0, 'test_elbo': -2.0}}], {str(path)!r})\n"
        "assert 'matplotlib.figure' in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert Image.open(path).size == (6 * plots.DPI, 4 * plots.DPI)


def drawn(monkeypatch, draw):
    """The one figure `draw()` saves, drawn (its saving replaced)."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    draw()
    (fig,) = figures
    fig.canvas.draw()
    return fig


def drawn_curve(metrics, tmp_path, monkeypatch):
    """The axes of `plots.training_curve(metrics)`, as drawn."""
    return drawn(monkeypatch, lambda: plots.training_curve(metrics, tmp_path / "curve.png")).axes[0]


def test_training_curve_of_a_long_run_shows_its_validation_warmup_and_best_epoch(tmp_path, monkeypatch):
    """100 epochs, the first 500 nats below the rest, warm-up in epochs 1 to 10 (beta < 1), validation in every
    epoch but the first: each curve drawn as recorded, the warm-up shaded, a vertical line at the epoch of
    the highest validation ELBO (numpy's argmax), and the y axis spanning epochs 11 to 100, not epoch 1."""
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 101)
    train = -230 - 30 * np.exp(-epochs / 20) + rng.normal(0, 0.3, 100)
    test, valid = train - 2 + rng.normal(0, 0.3, 100), train - 1 + rng.normal(0, 0.3, 100)
    train[0] = test[0] = -800.0
    metrics = [
        {"epoch": int(e), "train_elbo": a, "test_elbo": b, "beta": min(1.0, (e - 1) / 10)}
        | ({"validation_elbo": c} if e > 1 else {})
        for e, a, b, c in zip(epochs, train, test, valid, strict=True)
    ]
    ax = drawn_curve(metrics, tmp_path, monkeypatch)
    lines = {line.get_label(): line for line in ax.lines}
    np.testing.assert_array_equal(lines["train ELBO (during the epoch)"].get_ydata(), train)
    np.testing.assert_array_equal(lines["test ELBO"].get_xydata(), np.c_[epochs, test])
    np.testing.assert_array_equal(lines["validation ELBO"].get_xydata(), np.c_[epochs, valid][1:])
    best = int(epochs[1:][np.argmax(valid[1:])])
    assert list(lines[f"best validation ELBO, epoch {best}"].get_xdata()) == [best, best]
    (warmup,) = ax.patches
    assert (warmup.get_x(), warmup.get_x() + warmup.get_width()) == (0.5, 10.5)  # epochs 1 to 10, in data units
    (low, high), (x_low, x_high) = ax.get_ylim(), ax.get_xlim()
    shown = np.r_[train[10:], test[10:], valid[10:]]
    assert -800 < low < shown.min() and shown.max() < high < shown.max() + 0.1 * np.ptp(shown) + 1e-9
    assert x_low < 1 and x_high > 100 and ax.get_title() == "training curve (y axis: the range of epochs 11 to 100)"


def test_training_curve_of_one_epoch_without_validation(tmp_path, monkeypatch):
    """One epoch, no validation set, no warm-up: two dots, no best-epoch line, nothing shaded."""
    ax = drawn_curve([{"epoch": 1, "train_elbo": -3.0, "test_elbo": -2.0, "beta": 1.0}], tmp_path, monkeypatch)
    assert [line.get_label() for line in ax.lines] == ["train ELBO (during the epoch)", "test ELBO"]
    assert all(line.get_marker() == "o" for line in ax.lines) and not ax.patches
    assert ax.get_title() == "training curve"
    low, high = ax.get_ylim()
    assert low < -3.0 and high > -2.0


def test_sweep_curves_span_every_member_from_the_10_percent_mark(tmp_path, monkeypatch):
    """Two members of 40 and 25 epochs, each with a first epoch 1,000 nats down: the y axis spans the test
    and train ELBO of epochs 5 to 40 and 3 to 25, not the first epochs."""
    rng = np.random.default_rng(1)
    metrics = {}
    for name, n in (("a", 40), ("b", 25)):
        test, train = rng.normal(-100, 3, n), rng.normal(-99, 3, n)
        test[0] = train[0] = -1100.0
        metrics[name] = [{"epoch": e + 1, "test_elbo": test[e], "train_elbo": train[e]} for e in range(n)]
    (ax,) = drawn(monkeypatch, lambda: plots.training_curves(metrics, tmp_path / "curves.png")).axes
    shown = [
        r[k] for name, first in (("a", 4), ("b", 2)) for r in metrics[name][first:] for k in ("test_elbo", "train_elbo")
    ]
    pad = 0.05 * np.ptp(shown)
    np.testing.assert_allclose(ax.get_ylim(), (min(shown) - pad, max(shown) + pad))
    assert ax.get_title() == "training curves (y axis: from the 10% mark of the epochs on)"


def test_latent_scatter_gives_each_class_its_own_colour(tmp_path, monkeypatch):
    """Three classes at three places: each place is drawn in its class's colour (tab10: C0, C1, C2), and no
    fourth colour is used."""
    tab10 = {(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)}  # C0 to C3
    places = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    y = np.repeat(np.array([5, 7, 9]), 50)  # labels need not start at 0
    monkeypatch.setattr(plots, "_posterior_means", lambda vae, x: places[np.searchsorted([5, 7, 9], y)])
    path = plots.latent_scatter(ONE_LAYER, np.zeros((150, 4)), y, tmp_path / "scatter.png")
    pixels = {tuple(p) for p in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}
    assert tab10 & pixels == tab10 - {(214, 39, 40)}


@pytest.mark.parametrize("n, scale", [(8, 1.0), (18, 30.0)])
def test_gaps_figure_has_whole_example_ticks_and_readable_gap_ticks(tmp_path, monkeypatch, n, scale):
    """A few examples: the example axis shows whole numbers only; the gap axis at least three labelled ticks
    within the bars' range, whether the gaps are all below 1 nat (linear) or reach tens (symlog)."""
    rng = np.random.default_rng(0)
    log_px = np.sort(-rng.gamma(5, 5, n))
    approximation, amortization = rng.gamma(2, 0.3, n), rng.gamma(2, 0.2, n) * scale
    gaps = {
        "log_px": log_px,
        "elbo_optimized": log_px - approximation,
        "elbo": log_px - approximation - amortization,
        "approximation_gap": approximation,
        "amortization_gap": amortization,
    }
    top, bottom = drawn(monkeypatch, lambda: plots.inference_gaps(gaps, tmp_path / "gaps.png", "quadrature")).axes
    for ax in (top, bottom):
        lo, hi = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert shown and all(float(t).is_integer() for t in shown), shown
    lo, hi = bottom.get_ylim()
    labelled = [t for t in bottom.get_yticklabels() if lo <= t.get_position()[1] <= hi and t.get_text()]
    assert len(labelled) >= 3 and max(t.get_position()[1] for t in labelled) >= 1.0, [t.get_text() for t in labelled]


def test_manifold_ticks_name_the_z_each_tile_is_decoded_at(tmp_path, monkeypatch):
    """Each labelled tick sits at the centre of a tile, and its label is the z coordinate that tile was
    decoded at (z1 along the bottom, z2 up the left side, largest at the top); the quantiles are scipy's."""
    from scipy.stats import norm

    decoded, saved = [], []
    monkeypatch.setattr(plots, "_decoded_top", lambda vae, z: decoded.append(z) or np.zeros((len(z), 64)))
    original = plots._save_grid
    monkeypatch.setattr(plots, "_save_grid", lambda *args: saved.append(args) or original(*args))
    path = plots.manifold(ONE_LAYER, (8, 8), tmp_path / "manifold.png", n=12)
    (z,) = decoded
    ((_, title, _, (x_ticks, y_ticks, x_label, y_label)),) = saved
    assert "Phi" not in title and "p(x|z)" in title and (x_label.startswith("z1"), y_label) == (True, "z2")
    tiles = z.reshape(12, 12, 2)  # row by row from the top, as image_grid tiles them
    np.testing.assert_allclose(tiles[0, :, 0], norm.ppf(np.linspace(0.05, 0.95, 12)), atol=1e-6)
    for ticks, axis in ((x_ticks, 0), (y_ticks, 1)):
        assert len(ticks) >= 4
        for position, text in ticks:
            tile, offset = divmod(position, 8 + plots.GAP)
            assert offset == 3.5  # the centre of an 8-pixel tile
            at = tiles[0, int(tile), 0] if axis == 0 else tiles[int(tile), 0, 1]
            assert text == f"{at:.2f}"
    assert float(y_ticks[0][1]) > float(y_ticks[-1][1])  # z2 grows upwards
    assert Image.open(path).size[1] > 12 * 9 + plots.TITLE_PIXELS  # room for the ticks below the grid


def test_latent_scatter_legend_names_an_image_folder_s_classes(tmp_path, monkeypatch):
    """Labels 0, 1, 2 named by the class subfolders: the legend shows the names, under the title "class"."""
    y = np.repeat(np.arange(3), 10)
    monkeypatch.setattr(plots, "_posterior_means", lambda vae, x: np.stack([y, -y], 1).astype(float))
    names = ("ant", "bee", "cat")
    fig = drawn(monkeypatch, lambda: plots.latent_scatter(ONE_LAYER, np.zeros((30, 4)), y, tmp_path / "s.png", names))
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["ant", "bee", "cat"]
    assert legend.get_title().get_text() == "class"


def test_gaps_figure_is_drawn_again_for_its_model_and_removed_when_stale(tmp_path, monkeypatch):
    """gaps.png with its values of epoch 3: write_figures of epoch 3 draws it again (the same pixels), of
    epoch 4 (a model trained on) removes it and its values; a gaps.png without values is removed as well."""
    monkeypatch.setattr(plots, "latent_scatter", lambda vae, x, y, path, names=(): path)
    rng = np.random.default_rng(0)
    log_px = np.sort(-rng.gamma(5, 5, 6))
    gaps = {"log_px": log_px, "elbo_optimized": log_px - 1, "elbo": log_px - 3}
    gaps |= {"approximation_gap": np.ones(6), "amortization_gap": 2 * np.ones(6)}
    folder = tmp_path / "figures"
    first = np.asarray(Image.open(plots.gaps_figure(gaps, folder, "quadrature", epoch=3)))
    (folder / "gaps.png").unlink()
    data = type("Data", (), {"x_test": None, "y_test": None, "classes": (), "shape": (5,)})()
    config = RunConfig(ModelConfig(data_shape=(5,)), TrainConfig())
    written = plots.write_figures(None, data, config, folder, [{"epoch": 3, "train_elbo": -1.0, "test_elbo": -1.0}])
    assert folder / "gaps.png" in written
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "gaps.png")), first)
    written = plots.write_figures(None, data, config, folder, [{"epoch": 4, "train_elbo": -1.0, "test_elbo": -1.0}])
    assert folder / "gaps.png" not in written and not (folder / "gaps.png").exists()
    assert not (folder / "gaps.npz").exists()
    (folder / "gaps.png").write_bytes(b"a figure from before gaps.npz")
    plots.write_figures(None, data, config, folder, [])
    assert not (folder / "gaps.png").exists()


def test_write_figures_shows_a_bar_over_its_figures_only_with_progress(tmp_path, monkeypatch, capsys):
    """A bar named after the run, counting its figures (here the training curve and the scatter), on stderr
    with `progress`; nothing without."""
    monkeypatch.setattr(plots, "latent_scatter", lambda vae, x, y, path, names=(): path)
    data = type("Data", (), {"x_test": None, "y_test": None, "classes": (), "shape": (5,)})()
    config = RunConfig(ModelConfig(data_shape=(5,)), TrainConfig())
    metrics = [{"epoch": 1, "train_elbo": -1.0, "test_elbo": -1.0}]
    written = plots.write_figures(None, data, config, tmp_path / "run" / "figures", metrics)
    assert len(written) == 2 and capsys.readouterr().err == ""
    assert plots.write_figures(None, data, config, tmp_path / "run" / "figures", metrics, progress=True) == written
    err = capsys.readouterr().err
    assert "figures of run: " in err and "/2 [" in err, err


@pytest.mark.slow
def test_jaxvae_plot_shows_its_progress_unless_quiet(tmp_path, capsys):
    from jaxvae.cli import main

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", "--hidden", "8", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    assert "figures of run: " in capsys.readouterr().err
    assert main(["plot", str(run), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_deep_models_manifold_is_of_the_top_layer_with_the_layers_below_at_their_conditional_means(tmp_path):
    """`--latent-dim 3,2`: the grid is over z_2, and z_1 is decoded at E[z_1 | z_2], the mean of the
    prior's conditional p(z_1 | z_2) at each grid point; the scatter shows the top layer."""
    import jax

    from jaxvae.builder import build_model
    from jaxvae.config import ModelConfig

    vae = build_model(ModelConfig((64,), latent_dim=5, layers=(3, 2), hidden=(8,)), key=jax.random.PRNGKey(0))
    decoded = []
    original = plots._decoded
    plots._decoded = lambda vae, z: decoded.append(z) or original(vae, z)
    try:
        plots.manifold(vae, (8, 8), tmp_path / "manifold.png", n=4)
    finally:
        plots._decoded = original
    (z,) = decoded
    assert z.shape == (16, 5)
    expected = np.asarray(vae.prior().down[0](jax.numpy.asarray(z[:, 3:])).mean)
    np.testing.assert_allclose(z[:, :3], expected, atol=1e-6)
