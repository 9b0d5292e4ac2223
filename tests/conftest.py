"""Shared test models with known answers, small IDX files made by the tests, and their subprocesses."""

import contextlib
import gzip
import hashlib
import signal
import struct
import subprocess

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from jaxvae.builder import build_model
from jaxvae.config import ModelConfig
from jaxvae.process import enable_compilation_cache, reuse_freed_memory

enable_compilation_cache()  # as every jaxvae command does: a test's programs compiled once are read from disk after
reuse_freed_memory()


def linear_gaussian_vae(d: int = 5, k: int = 2, sigma: float = 0.7, seed: int = 0, exact_posterior: bool = True):
    """A VAE with p(x|z) = N(W z + b, sigma^2 I), p(z) = N(0, I) and a linear encoder.

    W has orthogonal columns, so the true posterior N(A x + c, C) has diagonal C and the encoder
    can represent it exactly. Returns (vae, W, b, sigma); closed forms are in `linear_gaussian_truth`.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, k)))
    W = q * rng.uniform(0.5, 2.0, size=k)
    b = rng.normal(size=d)
    vae = build_model(ModelConfig(data_shape=(d,), latent_dim=k, hidden=(), likelihood="gaussian"), key=_key(seed))
    # exact posterior: C = (I + W^T W / s^2)^-1 (diagonal), mean = C W^T (x - b) / s^2
    C = np.linalg.inv(np.eye(k) + W.T @ W / sigma**2)
    A = C @ W.T / sigma**2
    if exact_posterior:
        enc_w = np.concatenate([A, np.zeros((k, d))], axis=0)
        enc_b = np.concatenate([-A @ b, np.log(np.diag(C))])
    else:
        enc_w = 0.3 * rng.normal(size=(2 * k, d))
        enc_b = 0.3 * rng.normal(size=2 * k)
    vae = eqx.tree_at(lambda m: m.encoder.layers[0].weight, vae, jnp.asarray(enc_w, jnp.float32))
    vae = eqx.tree_at(lambda m: m.encoder.layers[0].bias, vae, jnp.asarray(enc_b, jnp.float32))
    vae = eqx.tree_at(lambda m: m.decoder.layers[0].weight, vae, jnp.asarray(W, jnp.float32))
    vae = eqx.tree_at(lambda m: m.decoder.layers[0].bias, vae, jnp.asarray(b, jnp.float32))
    vae = eqx.tree_at(lambda m: m.likelihood.log_var, vae, jnp.asarray(2 * np.log(sigma), jnp.float32))
    return vae, W, b, sigma


def linear_gaussian_truth(vae, W, b, sigma, x, q=None):
    """Closed forms for `linear_gaussian_vae`: (log p(x), ELBO of q), each (n,), float64; q is the encoder's
    unless a diagonal Normal over (n, k) is given."""
    from scipy.stats import multivariate_normal

    d, k = W.shape
    log_px = multivariate_normal(b, W @ W.T + sigma**2 * np.eye(d)).logpdf(x)
    q = vae.encode(jnp.asarray(x, jnp.float32)) if q is None else q
    m, s2 = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_var, np.float64))
    resid = x - m @ W.T - b
    expected_log_lik = (
        -0.5 * d * np.log(2 * np.pi * sigma**2) - 0.5 * (np.sum(resid**2, 1) + s2 @ np.sum(W**2, 0)) / sigma**2
    )
    kl = 0.5 * np.sum(s2 + m**2 - 1 - np.log(s2), axis=1)
    return np.atleast_1d(log_px), expected_log_lik - kl


def _key(seed):
    import jax

    return jax.random.PRNGKey(seed)


def write_idx(path, array: np.ndarray, compress=True):
    """An MNIST-format IDX file of uint8 `array` (gzipped unless `compress` is False)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_idx_folder(folder, n_train=12, n_test=5, size=4):
    """The four MNIST-format IDX files of random images in `folder`; returns the images by part."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    images = {"train": rng.integers(0, 256, (n_train, size, size)), "t10k": rng.integers(0, 256, (n_test, size, size))}
    for part, x in images.items():
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", rng.integers(0, 10, len(x)))
    return images


def content_md5(folder) -> dict[str, str]:
    """The MD5 of each IDX file in `folder`, uncompressed, by its name without .gz: a table like
    `download.CONTENT_MD5["mnist"]`, for files a test made."""
    files = {p.name.removesuffix(".gz"): p.read_bytes() for p in folder.glob("*-ubyte*")}
    return {
        name: hashlib.md5(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).hexdigest()
        for name, raw in files.items()
    }


# The longest tests (half a minute to two on two busy cores): they start before any other, so that no worker is running
# one of them alone at the end. pytest-xdist hands each worker two tests at the start: the notebook and the two
# processes go to one, the pages to the next.
LONGEST = (
    "tests/test_tutorial.py::test_notebook_runs_end_to_end",
    "tests/test_parallel.py::test_two_processes_train_like_one",
    "tests/test_page_blocks.py::test_every_block_of_the_pages_runs_and_their_outputs_are_what_the_tool_prints",
)


def pytest_configure(config):
    """Start every child with Ctrl-C's default action, whatever this process inherited: a shell starts a
    background job (`make test &`) with SIGINT ignored, every process under it inherits that, and a Python
    process that starts with SIGINT ignored never raises KeyboardInterrupt.

    pytest-xdist hands the tests to its workers one at a time (`--maxschedchunk 1`, unless given), in the
    order of `pytest_collection_modifyitems`: a worker that is done takes the next test, so the workers
    finish together."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if config.pluginmanager.hasplugin("xdist") and config.getoption("maxschedchunk") is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(items):
    """The LONGEST tests first, then the other slow ones, then the rest, each group in the order collected."""

    def rank(item) -> int:
        if item.nodeid in LONGEST:
            return LONGEST.index(item.nodeid)
        return len(LONGEST) + (item.get_closest_marker("slow") is None)

    items.sort(key=rank)


@contextlib.contextmanager
def spawn(args, ignore_signals=False, **kwargs):
    """`subprocess.Popen(args)`, killed and reaped when the block ends, whether the test passed or not.

    With `ignore_signals`, the child starts with SIGINT and SIGTERM ignored (through `sh -c 'trap "" ...'`,
    which sets them before exec without running Python code between fork and exec).
    """
    if ignore_signals:
        args = ["sh", "-c", 'trap "" INT TERM; exec "$@"', "sh", *args]
    with subprocess.Popen(args, **kwargs) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def _hypothesis_profile():
    """Hypothesis draws the same examples on every run, so a statistical test cannot flake in CI."""
    from hypothesis import settings

    settings.register_profile("jaxvae", derandomize=True)
    settings.load_profile("jaxvae")


_hypothesis_profile()


def run_main(argv, capsys):
    """The command line in this process (cheap): (exit code, stderr)."""
    from jaxvae.cli import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def evaluated_m2(run, n: int, iw_samples: int, tmp_path, capsys) -> tuple[dict, np.ndarray, np.ndarray]:
    """(`evaluate RUN --json`'s result on the first n test examples, `encode RUN`'s q(y|x) (n, C) and labels
    (n,) of them): an M2 run's scores and what they are recomputed from."""
    import json

    from jaxvae.cli import main

    assert main(["evaluate", str(run), "--json", "--iw-samples", str(iw_samples), "--n", str(n), "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out = tmp_path / "q.npz"
    code, err = run_main(["encode", str(run), "-o", str(out)], capsys)
    assert code == 0, err
    with np.load(out) as arrays:
        return result, arrays["q_y"][:n], arrays["y"][:n]
