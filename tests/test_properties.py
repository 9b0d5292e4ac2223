"""Property-based tests (hypothesis) of the math over random shapes and values, and fuzzing of the
data readers with random and corrupted bytes. Example counts are kept small: the suite runs on 2 cores."""

import gzip
import io
import math
import struct
import warnings
import zipfile

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, stats

from conftest import linear_gaussian_truth, linear_gaussian_vae
from jaxvae.data import Dataset, load_dataset, read_idx
from jaxvae.distributions import Bernoulli, ContinuousBernoulli, Normal, kl_normal
from jaxvae.errors import InputError
from jaxvae.objectives import iwae

FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def shapes():
    """(n, d) from a few sizes, so the compiled kernels are reused between examples."""
    return st.tuples(st.sampled_from([1, 3]), st.sampled_from([1, 4, 7]))


def arrays(shape, low, high):
    return hnp.arrays(np.float32, shape, elements=st.floats(low, high, width=32))


@st.composite
def normal_pairs(draw):
    """Two diagonal Normals of one shape (n, k): means in [-20, 20], log-variances in [-10, 10]."""
    shape = draw(shapes())
    mean, log_var = (arrays(shape, -20, 20), arrays(shape, -10, 10))
    return (draw(mean), draw(log_var)), (draw(mean), draw(log_var))


def kl_by_quadrature(mq, vq, mp, vp) -> float:
    """KL(N(mq, e^vq) || N(mp, e^vp)) in float64 by quadrature of q (log q - log p) over mq +- 12 sd."""

    def log_normal(z, m, v):
        return -0.5 * (math.log(2 * math.pi) + v + (z - m) ** 2 * math.exp(-v))

    sd = math.exp(vq / 2)
    integrand = lambda z: math.exp(log_normal(z, mq, vq)) * (log_normal(z, mq, vq) - log_normal(z, mp, vp))  # noqa: E731
    return integrate.quad(integrand, mq - 12 * sd, mq + 12 * sd, points=[mq], limit=200)[0]


@pytest.mark.slow
@FEW
@given(normal_pairs())
def test_kl_is_nonnegative_zero_only_when_equal_and_matches_quadrature(pair):
    (mq, vq), (mp, vp) = pair
    q, p = Normal(jnp.asarray(mq), jnp.asarray(vq)), Normal(jnp.asarray(mp), jnp.asarray(vp))
    kl = np.asarray(kl_normal(q, p), np.float64)
    rows = zip(mq.astype(float), vq.astype(float), mp.astype(float), vp.astype(float), strict=True)
    reference = np.array([sum(map(kl_by_quadrature, *row)) for row in rows])
    # float32: each term is exact to ~1e-7 relative, so the sum of the terms' magnitudes bounds the error
    scale = 0.5 * np.sum(np.exp(vq - vp) + (mq - mp) ** 2 * np.exp(-vp) + np.abs(vp - vq) + 1, axis=-1)
    assert np.all(np.abs(kl - reference) <= 1e-4 * np.abs(reference) + 1e-5 * scale)
    assert np.all(kl >= -1e-6 * scale)
    assert np.all(kl[reference > 1e-3 * scale] > 0)  # distributions that differ have a positive KL
    assert np.all(np.abs(np.asarray(kl_normal(q, q))) <= 1e-6 * scale)


@FEW
@given(shapes(), st.data())
def test_normal_log_prob_matches_scipy_at_extreme_log_variances(shape, data):
    mean, log_var = data.draw(arrays(shape, -1e3, 1e3)), data.draw(arrays(shape, -30, 30))
    x = data.draw(arrays(shape, -1e3, 1e3))
    got = np.asarray(Normal(jnp.asarray(mean), jnp.asarray(log_var)).log_prob(jnp.asarray(x)), np.float64)
    want = stats.norm(mean.astype(np.float64), np.exp(log_var.astype(np.float64) / 2)).logpdf(x).sum(-1)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def bernoulli_reference(logits, x):
    """x log sigmoid(l) + (1 - x) log(1 - sigmoid(l)) in float64, via logaddexp: the scipy definition."""
    l = logits.astype(np.float64)
    return np.sum(x * l - np.logaddexp(0, l), axis=-1)


def continuous_bernoulli_reference(logits, x):
    """Bernoulli part plus log C(l), C(l) = l / tanh(l / 2) (C(0) = 2), in float64."""
    l = logits.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_c = np.where(l == 0, np.log(2), np.log(l / np.tanh(l / 2)))
    return bernoulli_reference(logits, x) + np.sum(log_c, axis=-1)


@pytest.mark.slow
@FEW
@given(shapes(), st.sampled_from([1.0, 30.0, 1e4]), st.booleans(), st.data())
def test_log_probs_and_gradients_are_finite_at_extreme_logits(shape, bound, continuous, data):
    """Logits up to |l| = 1e4 (where sigmoid is 0 or 1 in float32): values agree with float64
    references to float32 round-off of l, and gradients (x - mean, bounded) are finite."""
    logits = data.draw(arrays(shape, -bound, bound))
    if continuous:
        x, dist, reference = data.draw(arrays(shape, 0, 1)), ContinuousBernoulli, continuous_bernoulli_reference
    else:
        x = data.draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0])))
        dist, reference = Bernoulli, bernoulli_reference
    got = np.asarray(dist(jnp.asarray(logits)).log_prob(jnp.asarray(x)), np.float64)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference(logits, x), rtol=1e-5, atol=1e-6 * np.abs(logits).sum() + 1e-4)
    grad = jax.grad(lambda l: dist(l).log_prob(jnp.asarray(x)).sum())(jnp.asarray(logits))
    assert np.all(np.isfinite(grad)) and np.all(np.abs(grad) <= 1 + 1e-5)
    mean = np.asarray(dist(jnp.asarray(logits)).mean)
    assert np.all((0 <= mean) & (mean <= 1))


@eqx.filter_jit
def iwae_draws(vae, x, keys):
    """L_K(x) for K = 1, 2, 8 and each key: three arrays of shape (len(keys), n)."""
    return [jax.vmap(lambda key, K=K: iwae(vae, x, key=key, samples=K))(keys) for K in (1, 2, 8)]


@pytest.mark.slow
@settings(max_examples=5, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([2, 4]), st.sampled_from([1, 2]))
def test_iwae_bound_is_nondecreasing_in_k_in_expectation(seed, d, k):
    """E[L_1] <= E[L_2] <= E[L_8] <= log p(x) on random linear-Gaussian models with a poor encoder.

    Expectations are means over R = 1,000 draws; each inequality is allowed a slack of 4 standard
    errors of the paired difference (one-sided: a false failure has probability ~3e-5 per check).
    log p(x) is the closed form of the model's marginal N(b, W W^T + sigma^2 I).
    """
    vae, W, b, sigma = linear_gaussian_vae(d=d, k=k, seed=seed, exact_posterior=False)
    x = np.random.default_rng(seed).normal(size=(3, d)) + b
    log_px, _ = linear_gaussian_truth(vae, W, b, sigma, x)
    keys = jax.random.split(jax.random.PRNGKey(seed), 1000)
    draws = [np.asarray(a, np.float64) for a in iwae_draws(vae, jnp.asarray(x, jnp.float32), keys)]
    for low, high in zip(draws, draws[1:], strict=False):
        diff = high - low
        assert np.all(diff.mean(0) >= -4 * diff.std(0) / np.sqrt(len(keys)))
    top = draws[-1]
    assert np.all(top.mean(0) <= log_px + 4 * top.std(0) / np.sqrt(len(keys)) + 1e-4)
    gain = draws[-1] - draws[0]  # and the bound does rise: a plain mean of the weights would not
    assert np.all(gain.mean(0) > 4 * gain.std(0) / np.sqrt(len(keys)))


# ----- fuzzing the data readers: every input either loads or raises InputError -----


def loads_or_input_error(read, *args):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. casting NaN labels warns; that is not the property here
            result = read(*args)
    except InputError:
        return None
    assert isinstance(result, np.ndarray | Dataset)
    return result


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@st.composite
def corrupted(draw, raw: bytes):
    """`raw` truncated, with flipped bytes, or with bytes appended."""
    how = draw(st.sampled_from(["truncate", "flip", "append"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    if how == "append":
        return raw + draw(st.binary(min_size=1, max_size=16))
    out = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


def small_uint8(draw):
    shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    return draw(hnp.arrays(np.uint8, tuple(shape)))


@FEW
@given(st.binary(max_size=300), st.booleans())
def test_read_idx_random_bytes(tmp_path_factory, raw, gz):
    path = tmp_path_factory.mktemp("fuzz") / ("x-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(raw)
    loads_or_input_error(read_idx, path)


@FEW
@given(st.data(), st.booleans(), st.booleans())
def test_read_idx_corrupted_files(tmp_path_factory, data, gz, corrupt_after_compression):
    array = small_uint8(data.draw)
    raw = idx_bytes(array)
    if gz and corrupt_after_compression:
        raw = data.draw(corrupted(gzip.compress(raw)))
    else:
        raw = data.draw(corrupted(raw))
        raw = gzip.compress(raw) if gz else raw
    path = tmp_path_factory.mktemp("fuzz") / ("x-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(raw)
    loads_or_input_error(read_idx, path)


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@FEW
@given(st.data(), st.sampled_from([".npy", ".npz"]), st.sampled_from(["random", "corrupted"]))
def test_array_files_random_and_corrupted_bytes(tmp_path_factory, data, suffix, kind):
    if kind == "random":
        raw = data.draw(st.binary(max_size=400))
    else:
        x = data.draw(hnp.arrays(np.uint8, (6, 2, 2)))
        raw = data.draw(corrupted(npy_bytes(x) if suffix == ".npy" else npz_bytes(x=x, y=np.arange(6))))
    path = tmp_path_factory.mktemp("fuzz") / ("data" + suffix)
    path.write_bytes(raw)
    loads_or_input_error(load_dataset, str(path))


ODD_DTYPES = st.sampled_from(
    [np.uint8, np.int8, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64, "U3", "S2", "M8[s]"]
)


@FEW
@given(st.data())
def test_npz_with_arbitrary_arrays(tmp_path_factory, data):
    """Well-formed files holding the wrong things: any dtype, rank 0 to 3, labels of any kind."""
    x = data.draw(hnp.arrays(ODD_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
    arrays = {"x": x}
    if data.draw(st.booleans()):
        arrays["y"] = data.draw(hnp.arrays(ODD_DTYPES, hnp.array_shapes(min_dims=0, max_dims=2, max_side=5)))
    path = tmp_path_factory.mktemp("fuzz") / "data.npz"
    path.write_bytes(npz_bytes(**arrays))
    loads_or_input_error(load_dataset, str(path))


def test_npz_that_is_a_zip_of_something_else(tmp_path):
    path = tmp_path / "data.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"not an array")
    with pytest.raises(InputError):
        load_dataset(str(path))
