"""Conditional VAEs: p(x | z, c) p(z | c) and q(z | x, c), checked against closed forms, Monte Carlo, the
unconditional model's numbers from before the condition existed, a classifier of real digits, and the
command line's refusals."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from conftest import run_main
from jaxvae import build_model
from jaxvae.config import ModelConfig
from jaxvae.distributions import Normal, kl_terms
from jaxvae.evaluate import log_likelihood, log_likelihood_quadrature, mean_elbo
from jaxvae.likelihoods import GaussianPixels
from jaxvae.model import VAE
from jaxvae.networks import MLP, Linear
from jaxvae.objectives import elbo, iwae, log_importance_weights
from jaxvae.posteriors import DiagonalGaussian
from jaxvae.priors import PriorNetwork, StandardNormal

D, K, M, SIGMA = 3, 2, 4, 0.7  # data, latent and condition sizes; the decoder's noise
RNG = np.random.default_rng(0)
W = np.linalg.qr(RNG.normal(size=(D, K)))[0] * np.array([1.5, 0.8])  # orthogonal columns: W^T W diagonal
B, b, A = RNG.normal(size=(D, M)), RNG.normal(size=D), RNG.normal(size=(K, M))


def affine(weight, condition, bias) -> MLP:
    """An MLP of no hidden layer computing weight @ x + condition @ c + bias."""
    mlp = MLP(weight.shape[1], weight.shape[0], (), jnp.tanh, key=jax.random.PRNGKey(0), condition_dim=M)
    layer = Linear(jnp.asarray(weight, jnp.float32), jnp.asarray(bias, jnp.float32))
    return eqx.tree_at(lambda m: (m.layers[0], m.condition), mlp, (layer, jnp.asarray(condition, jnp.float32)))


def linear_gaussian(conditional_prior: bool, shift: float = 0.0) -> VAE:
    """x = W z + B c + b + SIGMA eps, z ~ N(A c, I) (or N(0, I)); the encoder the exact posterior, its mean
    moved by `shift` (P = I + W^T W / SIGMA^2 is diagonal)."""
    a = A if conditional_prior else np.zeros_like(A)
    precision = 1 + np.sum(W**2, axis=0) / SIGMA**2  # (K,)
    gain = W.T / SIGMA**2 / precision[:, None]  # the posterior mean's weight on x - B c - b
    enc_weight = np.concatenate([gain, np.zeros((K, D))])
    enc_condition = np.concatenate([a / precision[:, None] - gain @ B, np.zeros((K, M))])
    enc_bias = np.concatenate([-gain @ b + shift, -np.log(precision)])
    encoder = affine(enc_weight, enc_condition, enc_bias)
    decoder = affine(W, B, b)
    likelihood = GaussianPixels(jnp.float32(2 * np.log(SIGMA)), fixed=True)
    if conditional_prior:
        prior_net = MLP(M, 2 * K, (), jnp.tanh, key=jax.random.PRNGKey(1))
        layer = Linear(jnp.asarray(np.concatenate([A, np.zeros((K, M))]), jnp.float32), jnp.zeros(2 * K))
        prior = PriorNetwork(eqx.tree_at(lambda m: m.layers[0], prior_net, layer))
    else:
        prior = StandardNormal(K)
    return VAE(encoder, DiagonalGaussian(K), decoder, likelihood, prior, M)


def exact_log_px(x, c, conditional_prior: bool):
    """log p(x | c) = log N(x | W A c + B c + b, W W^T + SIGMA^2 I), by scipy."""
    a = A if conditional_prior else np.zeros_like(A)
    covariance = W @ W.T + SIGMA**2 * np.eye(D)
    return np.array(
        [multivariate_normal(W @ a @ ci + B @ ci + b, covariance).logpdf(xi) for xi, ci in zip(x, c, strict=True)]
    )


def examples(n=5):
    c = np.eye(M)[RNG.integers(0, M, n)]
    x = RNG.normal(size=(n, D)) + c @ B.T
    return jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32)


@pytest.mark.parametrize("conditional_prior", [False, True])
def test_with_the_exact_posterior_the_bounds_are_log_p_x_given_c(conditional_prior):
    """With q(z | x, c) the exact posterior every log weight is scipy's log p(x | c), and the ELBO (its KL in
    closed form) is within 5 standard errors of it over 20000 draws (those of its reconstruction term)."""
    vae, (x, c) = linear_gaussian(conditional_prior), examples()
    expected = exact_log_px(np.asarray(x), np.asarray(c), conditional_prior)
    log_w = log_importance_weights(vae, x, key=jax.random.PRNGKey(2), samples=50, c=c)
    np.testing.assert_allclose(log_w, np.broadcast_to(expected, log_w.shape), atol=2e-4)
    samples, key = 20_000, jax.random.PRNGKey(3)
    z = vae.encode(x, c).sample(key, (samples,))
    standard_error = np.asarray(vae.decode(z, c).log_prob(x), np.float64).std(0) / np.sqrt(samples)
    got = np.asarray(elbo(vae, x, key=key, samples=samples, c=c).elbo)
    assert np.all(np.abs(got - expected) < 5 * standard_error + 1e-4), (got, expected, standard_error)
    means = mean_elbo(vae, x, jax.random.PRNGKey(4), samples=samples, c=c)
    assert float(means["elbo"]) == pytest.approx(expected.mean(), abs=5 * float(np.max(standard_error)))


@pytest.mark.slow
@pytest.mark.parametrize("conditional_prior", [False, True])
def test_l_k_with_a_poor_posterior_converges_to_log_p_x_given_c(conditional_prior):
    """q's mean moved off the posterior's by 0.5: the ELBO falls below log p(x | c), and L_5000 (evaluate's,
    q(z | x, c) the proposal) is within 5 standard errors of log w's mean (sd / sqrt(K)) plus its bias
    bound var(w) / (2 K mean(w)^2) of scipy's log p(x | c)."""
    vae, (x, c) = linear_gaussian(conditional_prior, shift=0.5), examples()
    expected = exact_log_px(np.asarray(x), np.asarray(c), conditional_prior)
    samples = 5000
    assert np.all(np.asarray(elbo(vae, x, key=jax.random.PRNGKey(4), samples=100, c=c).elbo) < expected - 0.05)
    log_w = np.asarray(log_importance_weights(vae, x, key=jax.random.PRNGKey(5), samples=samples, c=c), np.float64)
    w = np.exp(log_w - log_w.max(0))
    tolerance = 5 * log_w.std(0) / np.sqrt(samples) + w.var(0) / (2 * samples * w.mean(0) ** 2)
    got = log_likelihood(vae, x, jax.random.PRNGKey(6), samples=samples, c=c)
    assert np.all(np.abs(np.asarray(got) - expected) < tolerance), (got, expected, tolerance)
    direct = iwae(vae, x, key=jax.random.PRNGKey(7), samples=samples, c=c)  # the objectives' L_K, same bound
    assert np.all(np.abs(np.asarray(direct) - expected) < tolerance)


@pytest.mark.parametrize("conditional_prior", [False, True])
def test_the_quadrature_of_log_p_x_given_c_is_scipy_s(conditional_prior):
    """The trapezoid rule over z (k = 2) of p(x | z, c) p(z | c), with a poor q (it only places the fine
    grid), against scipy's log p(x | c): within 1e-3 nats."""
    vae, (x, c) = linear_gaussian(conditional_prior, shift=0.5), examples()
    expected = exact_log_px(np.asarray(x), np.asarray(c), conditional_prior)
    np.testing.assert_allclose(log_likelihood_quadrature(vae, x, c=c), expected, atol=1e-3)


def test_the_prior_network_kl_matches_monte_carlo():
    """KL(q(z | x, c) || p(z | c)) in closed form against the mean of log q(z) - log p(z) over 10^5 draws
    z ~ q: within 4 standard errors, for a prior network with a hidden layer."""
    network = MLP(M, 2 * K, (8,), jnp.tanh, key=jax.random.PRNGKey(8))
    c = jnp.asarray(np.eye(M)[[0, 2, 3]], jnp.float32)
    p = PriorNetwork(network)(None, c)
    q = Normal(jnp.asarray(RNG.normal(size=(3, K)), jnp.float32), jnp.asarray(RNG.normal(size=(3, K)), jnp.float32))
    z, log_q = q.sample_and_log_prob(jax.random.PRNGKey(9), (100_000,))
    closed = np.sum(np.asarray(kl_terms(q, p, z[:1], log_q[:1])), axis=-1)
    draws = np.asarray(log_q - p.log_prob(z), np.float64)
    standard_error = draws.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(closed - draws.mean(0)) < 4 * standard_error), (closed, draws.mean(0), standard_error)


@pytest.mark.slow
def test_without_a_condition_the_model_and_its_numbers_are_those_from_before():
    """The seed's model for 8x8 digits from key 0: its parameters' sums, its ELBO and L_5 at fixed keys, as
    jaxvae computed them before models took a condition (commit ea75f32)."""
    vae = build_model(ModelConfig((8, 8)), key=jax.random.PRNGKey(0))
    sums = [float(jnp.sum(leaf)) for leaf in jax.tree.leaves(eqx.filter(vae, eqx.is_array))]
    before = [7.525704383850098, -0.09265375137329102, 0.9727267026901245, 0.03486058861017227]
    before += [5.169808864593506, 19.44646453857422, -9.75918197631836, 0.31077736616134644]
    np.testing.assert_allclose(sums, before, rtol=1e-6, atol=1e-6)
    x = (jnp.arange(3 * 64).reshape(3, 64) % 7 / 6.0).astype(jnp.float32)
    np.testing.assert_allclose(
        elbo(vae, x, key=jax.random.PRNGKey(1)).elbo, [-46.25955581665039, -45.39310836791992, -44.90100860595703]
    )
    np.testing.assert_allclose(
        iwae(vae, x, key=jax.random.PRNGKey(2), samples=5), [-45.36559295654297, -45.70331573486328, -45.12559509277344]
    )


def test_a_conditional_network_is_the_network_of_the_concatenation():
    """MLP(d, condition_dim=m)(x, c) equals the MLP of [x, c] drawn from the same key, and refuses a missing c."""
    key = jax.random.PRNGKey(10)
    split = MLP(D, 5, (7,), jnp.tanh, key=key, condition_dim=M)
    joined = MLP(D + M, 5, (7,), jnp.tanh, key=key)
    x, c = examples(1)
    np.testing.assert_allclose(split(x[0], c[0]), joined(jnp.concatenate([x[0], c[0]])), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="needs its condition"):
        split(x[0])


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A model of the digits conditioned on their labels, trained 10 epochs through the command line."""
    from jaxvae.cli import main

    out = tmp_path_factory.mktemp("conditional") / "run"
    argv = ["train", "--dataset", "digits", "--condition", "label", "--prior", "conditional", "--epochs", "10"]
    assert main([*argv, "--batch-size", "64", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.slow
def test_class_samples_are_recognized_by_a_classifier_of_real_digits(conditional_run, tmp_path, capsys):
    """`jaxvae sample --label y` for every class: a logistic regression trained here on the real training
    digits labels at least 80% of the 10 x 30 samples' means as the class asked for (chance: 10%); the .npz
    holds x (30, 8, 8) and z (30, 2)."""
    from sklearn.linear_model import LogisticRegression

    from jaxvae.data import load_dataset

    data = load_dataset("digits", progress=False)
    classifier = LogisticRegression(max_iter=2000).fit(data.x_train, data.y_train)
    assert classifier.score(data.x_test, data.y_test) > 0.9  # a classifier worth asking
    hits = []
    for label in range(10):
        out = tmp_path / f"class-{label}.png"
        argv = ["sample", str(conditional_run), "--label", str(label), "-n", "30", "-o", str(out)]
        code, err = run_main(argv, capsys)
        assert code == 0, err
        with np.load(out.with_suffix(".npz")) as arrays:
            assert arrays["x"].shape == (30, 8, 8) and arrays["z"].shape == (30, 2)
            hits.append(classifier.predict(arrays["x"].reshape(30, -1)) == label)
        assert out.stat().st_size > 0
    assert np.mean(hits) > 0.8, np.mean(hits, axis=1)


@pytest.mark.slow
def test_test_digits_styles_decoded_under_every_class_are_recognized_as_that_class(conditional_run, tmp_path):
    """The class-by-style figure's content: z = E[z | x, y] of 50 test digits decoded under each of the 10
    classes, labelled that class by a logistic regression of real digits in at least 80% of the 500 images;
    the run's figure class_by_style.png is drawn."""
    from sklearn.linear_model import LogisticRegression

    from jaxvae.data import load_dataset
    from jaxvae.evaluate import decoded_means, posterior_moments
    from jaxvae.train import load

    data = load_dataset("digits", progress=False)
    classifier = LogisticRegression(max_iter=2000).fit(data.x_train, data.y_train)
    vae, eye = load(conditional_run), np.eye(10, dtype=np.float32)
    x, y = data.x_test[:50], data.y_test[:50]
    styles = np.asarray(posterior_moments(vae, x, c=jnp.asarray(eye[y]))[0])
    labels = np.repeat(np.arange(10), 50)
    decoded = decoded_means(vae, jnp.asarray(np.tile(styles, (10, 1))), c=jnp.asarray(eye[labels]))
    assert np.mean(classifier.predict(np.asarray(decoded)) == labels) > 0.8
    assert (conditional_run / "figures" / "class_by_style.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_conditional_run_records_its_condition_and_resumes(conditional_run, capsys):
    config = json.loads((conditional_run / "config.json").read_text())
    assert config["train"]["condition"] == "label" and config["model"]["condition_dim"] == 10
    code, err = run_main(["train", "--out", str(conditional_run), "--resume", "--epochs", "11", "--quiet"], capsys)
    assert code == 0, err
    lines = (conditional_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 12))


BAD_COMBINATIONS = [
    (["--condition", "array", "--prior", "mixture:3"], "one per class: it needs --condition label"),
    (["--prior", "conditional"], "needs --condition label"),
    (["--condition", "digits"], "invalid choice"),
]


@pytest.mark.parametrize("extra, message", BAD_COMBINATIONS)
def test_bad_combinations_exit_2_with_one_line_and_no_run_folder(tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    code, err = run_main(["train", "--out", str(out), "--quiet", *extra], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_condition_on_data_without_labels_is_refused(tmp_path, capsys):
    path = tmp_path / "unlabelled.npy"
    np.save(path, RNG.random((20, 6)).astype(np.float32))
    out = tmp_path / "never"
    code, err = run_main(["train", "--dataset", str(path), "--condition", "label", "--out", str(out)], capsys)
    assert code == 2 and "--condition label needs labelled data" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_labels_outside_the_run_and_unconditional_runs_are_refused(conditional_run, tmp_path, capsys):
    """--label outside the classes, without --label on a conditional run, and on an unconditional run: one line,
    exit 2, nothing written."""
    from jaxvae.cli import main

    plain = tmp_path / "plain"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(plain), "--quiet"]) == 0
    out = tmp_path / "s.png"
    cases = [
        (["sample", str(conditional_run), "--label", "10", "-o", str(out)], "not one of the run's classes 0 to 9"),
        (["sample", str(conditional_run), "--label", "-1", "-o", str(out)], "not one of the run's classes 0 to 9"),
        (["sample", str(conditional_run), "-o", str(out)], "pass --label Y"),
        (["sample", str(plain), "--label", "1", "-o", str(out)], "trained with --condition label"),
    ]
    for argv, message in cases:
        code, err = run_main(argv, capsys)
        assert code == 2 and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.glob("s.*"))


@pytest.mark.slow
def test_evaluate_and_encode_read_a_conditional_run(conditional_run, tmp_path, capsys):
    """`evaluate --json` of log p(x | y): ELBO <= L_K, and L_K within 0.05 nats of the quadrature (k = 2:
    log p(x | y) up to the grid's error), each also per class; `encode` writes q(z | x, y)'s moments."""
    from jaxvae.cli import main

    assert main(["evaluate", str(conditional_run), "--json", "--iw-samples", "500", "--n", "50", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["condition"] == "label" and result["elbo"] <= result["log_likelihood"]
    assert abs(result["log_likelihood"] - result["log_likelihood_quadrature"]) < 0.05
    from jaxvae.data import load_dataset

    counts = np.bincount(load_dataset("digits", progress=False).y_test[:50], minlength=10)
    for name in ("log_likelihood", "log_likelihood_quadrature"):  # the classes' means make up the mean
        per_class = result[f"{name}_per_class"]
        assert len(per_class) == 10 and np.dot(counts, per_class) / counts.sum() == pytest.approx(result[name])
    out = tmp_path / "codes.npz"
    assert main(["encode", str(conditional_run), "-o", str(out)]) == 0
    with np.load(out) as codes:
        assert codes["mean"].shape == codes["std"].shape == (len(codes["y"]), 2)
