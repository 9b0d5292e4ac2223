"""The pure logic of benchmarks/cvae_speed.py: the quadrant split of its jaxvae tasks, and reading the peers'
output, checked on transcripts written as the peers' examples print (their format strings quoted)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_path = Path(__file__).parents[1] / "benchmarks" / "cvae_speed.py"
_spec = importlib.util.spec_from_file_location("cvae_speed", _path)
assert _spec is not None and _spec.loader is not None
cvae_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cvae_speed)


def test_quadrant_rows_split_the_image_as_the_peers_mask_it():
    # pixel (i, j) of image n holds 1000 n + 28 i + j, so every value names its image and place
    images = 1000 * np.arange(3)[:, None] + np.arange(784)[None, :]
    i, j = np.divmod(np.arange(784), 28)
    bottom_left = np.arange(784)[(i >= 14) & (j < 14)]  # Pyro's 1-quadrant input, NumPyro's x[:, 14:, :14]
    for task, d in ((cvae_speed.NUMPYRO, 784), (cvae_speed.PYRO, 588)):
        rows = cvae_speed.quadrant_rows(images, task)
        assert rows.shape == (3, d + 196)
        x, c = rows[:, :d], rows[:, d:]
        np.testing.assert_array_equal(np.sort(c % 1000, axis=1), np.tile(bottom_left, (3, 1)))
        np.testing.assert_array_equal(c // 1000, np.arange(3)[:, None] * np.ones((1, 196)))
        expected = np.arange(784) if task.whole else np.setdiff1d(np.arange(784), bottom_left)
        np.testing.assert_array_equal(np.sort(x % 1000, axis=1), np.tile(expected, (3, 1)))


def test_numpyro_epochs_from_its_lines():
    line = "Epoch loss - train loss: {}, validation loss: {}"  # train_cvae.py's and train_baseline.py's print
    transcript = [
        (10.0, 20.0, line.format(9e6, 15000.0)),  # baseline, 2 epochs
        (15.0, 29.0, line.format(8e6, 14000.0)),
        (40.0, 70.0, "a warning in between"),
        (45.0, 77.0, line.format(7e6, 12800.0)),  # CVAE, 2 epochs
        (52.5, 90.0, line.format(6e6, 13000.0)),
    ]
    seconds, best = cvae_speed.numpyro_epochs(transcript, epochs=2)
    np.testing.assert_allclose(seconds, [[30.0, 48.0], [7.5, 13.0]])
    assert best == pytest.approx(12800.0 / 128)


def test_pyro_epochs_span_each_training_progress_bar(tmp_path):
    def bar(epoch, phase, done):  # cvae.py's tqdm description, then tqdm's meter
        return f"{f'CVAE Epoch {epoch} {phase}'.ljust(20)}: {done}/469 [00:01<00:02, 9.1it/s]"

    transcript = [
        (1.0, 1.0, bar(0, "train", 0)),  # the bar's first output, at its creation
        (2.0, 2.5, bar(0, "train", 200)),
        (9.0, 12.0, bar(0, "train", 469)),
        (9.5, 12.5, bar(0, "val", 79)),
        (20.0, 30.0, bar(1, "train", 0)),
        (26.0, 39.0, bar(1, "train", 469)),
        (27.0, 40.0, "NN Epoch 1 train    : 469/469"),
    ]
    np.testing.assert_allclose(cvae_speed.pyro_epochs(transcript), [[8.0, 11.0], [6.0, 9.0]])
    results = tmp_path / "results.csv"  # as pandas writes main.py's table
    results.write_text(",1 quadrant\nNN (baseline),101.5\nCVAE (Monte Carlo),73.25\nPerformance gap,28.25\n")
    assert cvae_speed.pyro_score(results) == 73.25
