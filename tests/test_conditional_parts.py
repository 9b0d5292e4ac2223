"""Every part of a model takes the condition c: gated and conv networks against the networks of the
concatenation [x, c] (or a NumPy transcription), full and flow posteriors against scipy and the unconditional
model of [x, c], a mixture and a VampPrior per class against scipy, a deep model's L_K against a NumPy
quadrature of log p(x | c) in both inference orders, a user's model file, the command line; and without a
condition, every part's numbers from before parts took one."""

import json
import re
import shlex
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp
from scipy.stats import multivariate_normal, norm

from conftest import run_main
from jaxvae import build_model
from jaxvae.cli import main
from jaxvae.config import ModelConfig
from jaxvae.networks import ConvDecoder, ConvEncoder, GatedMLP, Linear
from jaxvae.objectives import elbo, iwae, log_importance_weights
from jaxvae.priors import GaussianMixture

M = 3  # classes
KEY = jax.random.PRNGKey(0)
RNG = np.random.default_rng(0)
X = (jnp.arange(3 * 64).reshape(3, 64) % 7 / 6.0).astype(jnp.float32)
C = jax.nn.one_hot(jnp.array([0, 2, 1]), M)


def joined(x, c):
    return jnp.concatenate([x, c], axis=-1)


@pytest.mark.parametrize("gated_out", [False, True])
def test_a_conditional_gated_network_is_the_gated_network_of_the_concatenation(gated_out):
    split = GatedMLP(5, 4, (6, 7), key=KEY, gated_out=gated_out, condition_dim=M)
    whole = GatedMLP(5 + M, 4, (6, 7), key=KEY, gated_out=gated_out)
    x = jnp.asarray(RNG.normal(size=5), jnp.float32)
    np.testing.assert_allclose(split(x, C[1]), whole(joined(x, C[1])), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="needs its condition"):
        split(x)


def test_a_conditional_conv_decoder_is_the_conv_decoder_of_z_and_c():
    split = ConvDecoder(2, (6, 5, 2), (3, 4), jnp.tanh, key=KEY, condition_dim=M)
    whole = ConvDecoder(2 + M, (6, 5, 2), (3, 4), jnp.tanh, key=KEY)
    z = jnp.asarray(RNG.normal(size=2), jnp.float32)
    np.testing.assert_allclose(split(z, C[2]), whole(joined(z, C[2])), rtol=1e-5, atol=1e-6)


def test_a_conditional_conv_encoder_adds_c_at_its_linear_layer():
    """Output = [W | W_c] [f, c] + b in float64 NumPy, f the convolutions' features (those of the unconditional
    encoder from the same key, read through an identity head), [W | W_c] drawn as the layer of [f, c]:
    uniform in +-1/sqrt(features + m)."""
    split = ConvEncoder((6, 5, 2), 7, (3, 4), jnp.tanh, key=KEY, condition_dim=M)
    plain = ConvEncoder((6, 5, 2), 7, (3, 4), jnp.tanh, key=KEY)
    features = 4 * 2 * 2  # 6 x 5 -> 3 x 3 -> 2 x 2, 4 channels
    identity = Linear(jnp.eye(features), jnp.zeros(features))
    x = jnp.asarray(RNG.normal(size=60), jnp.float32)
    f = np.asarray(eqx.tree_at(lambda e: e.head, plain, identity)(x), np.float64)
    weight = np.concatenate([split.head.weight, split.condition], axis=1).astype(np.float64)
    assert weight.shape == (7, features + M) and np.abs(weight).max() <= 1 / np.sqrt(features + M)
    expected = weight @ np.concatenate([f, np.asarray(C[0])]) + np.asarray(split.head.bias)
    np.testing.assert_allclose(split(x, C[0]), expected, rtol=1e-5, atol=1e-5)


def test_a_conditional_full_posterior_is_scipy_s_gaussian_from_the_encoder_of_x_and_c():
    """log q(z | x, c) of a full-covariance posterior: scipy's N(mu, L L^T), mu and L read in NumPy from the
    output of the unconditional encoder of [x, c] drawn from the same key."""
    k = 3
    vae = build_model(ModelConfig((8, 8), latent_dim=k, hidden=(16,), posterior="full", condition_dim=M), key=KEY)
    whole = build_model(ModelConfig((64 + M,), latent_dim=k, hidden=(16,), posterior="full"), key=KEY)
    params = np.asarray(jax.vmap(whole.encoder)(joined(X, C)), np.float64)
    q = vae.encode(X, C)
    z = q.sample(jax.random.PRNGKey(1), (4,))
    rows, cols = np.tril_indices(k, -1)
    for i, p in enumerate(params):
        scale = np.diag(np.exp(p[k : 2 * k]))
        scale[rows, cols] = p[2 * k :]
        expected = multivariate_normal(p[:k], scale @ scale.T).logpdf(np.asarray(z[:, i], np.float64))
        np.testing.assert_allclose(q.log_prob(z)[:, i], expected, rtol=1e-5, atol=1e-4)


def test_a_conditional_flow_posterior_is_the_flow_of_the_model_of_x_and_c():
    """IAF: its context comes from the encoder, so q(z | x, c) is the unconditional model's q of [x, c] (the
    same key: the same encoder weights and flow steps), draws and log densities alike."""
    vae = build_model(ModelConfig((8, 8), hidden=(16,), posterior="iaf:2", condition_dim=M), key=KEY)
    whole = build_model(ModelConfig((64 + M,), hidden=(16,), posterior="iaf:2"), key=KEY)
    key = jax.random.PRNGKey(2)
    z, log_q = vae.encode(X, C).sample_and_log_prob(key, (5,))
    z_whole, log_q_whole = whole.encode(joined(X, C)).sample_and_log_prob(key, (5,))
    np.testing.assert_allclose(z, z_whole, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_q, log_q_whole, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(vae.encode(X, C).log_prob(z), log_q, rtol=1e-4, atol=1e-3)  # the inverse flow


def per_class_mixture() -> GaussianMixture:
    prior = GaussianMixture(2, 3, key=KEY, classes=M)
    logits, log_vars = RNG.normal(size=(M, 3)), 0.5 * RNG.normal(size=(M, 3, 2))
    arrays = (jnp.asarray(logits, jnp.float32), jnp.asarray(log_vars, jnp.float32))
    return eqx.tree_at(lambda p: (p.logits, p.log_vars), prior, arrays)


def test_a_mixture_per_class_is_scipy_s_mixture_of_each_example_s_class():
    """log p(z | y) = logsumexp_j (log w_yj + log N(z | m_yj, s_yj^2)) by scipy, and the mean of 20000 draws
    per example within 4 standard errors of its class's mixture mean; no condition is a TypeError."""
    prior, labels = per_class_mixture(), np.array([0, 2, 1, 2])
    c = jax.nn.one_hot(labels, M)
    logits, means, sds = (np.asarray(a, np.float64) for a in (prior.logits, prior.means, jnp.exp(prior.log_vars / 2)))
    z = RNG.normal(size=(5, 4, 2))
    expected = [
        [
            logsumexp(log_softmax(logits[y]) + norm.logpdf(z[s, i], means[y], sds[y]).sum(-1))
            for i, y in enumerate(labels)
        ]
        for s in range(5)
    ]
    np.testing.assert_allclose(prior(None, c).log_prob(jnp.asarray(z, jnp.float32)), expected, rtol=1e-5)
    draws = np.asarray(prior(None, c).sample(jax.random.PRNGKey(3), (20000,)))
    w = np.exp(log_softmax(logits[labels], axis=-1))[..., None]  # (4, 3, 1)
    mean = np.sum(w * means[labels], axis=1)
    sd = np.sqrt(np.sum(w * (sds[labels] ** 2 + means[labels] ** 2), axis=1) - mean**2)
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / np.sqrt(20000))
    with pytest.raises(TypeError, match="needs the condition"):
        prior()


@pytest.mark.slow
def test_a_mixture_per_class_s_gradient_is_autodiff_s_of_each_example_s_own_mixture():
    """The gradient of sum w log p(z | y) in z and every parameter, taken in matrix products against all classes'
    components, equals jax.grad of the plain formula on each example's own mixture (its class's arrays
    gathered), float32; also vmapped per example and per class as M2's unlabelled bound calls it."""
    prior, labels = per_class_mixture(), np.array([0, 2, 1, 2])
    c = jax.nn.one_hot(labels, M)
    z = jnp.asarray(RNG.normal(size=(5, 4, 2)), jnp.float32)
    weights = jnp.asarray(RNG.normal(size=(5, 4)), jnp.float32)

    def ours(p, z):
        return jnp.sum(weights * p(None, c).log_prob(z))

    def plain(p, z):
        return jnp.sum(weights * p(None, c).of_examples().log_prob(z))

    def per_class(log_prob):  # log p(z | y) of each example's draws z_i (5, 2) under every class y: (4, M, 5)
        def one(p, zi, ci):
            return log_prob(p(None, ci[None]), zi[:, None, :])[:, 0]

        return lambda p, z: jnp.sum(
            jax.vmap(lambda zi: jax.vmap(lambda ci: one(p, zi, ci))(jnp.eye(M)))(jnp.swapaxes(z, 0, 1)) ** 2
        )

    for got, expected in (
        (ours, plain),
        (per_class(lambda d, z: d.log_prob(z)), per_class(lambda d, z: d.of_examples().log_prob(z))),
    ):
        np.testing.assert_allclose(got(prior, z), expected(prior, z), rtol=1e-6)
        ours_grad, plain_grad = (jax.grad(f, argnums=(0, 1))(prior, z) for f in (got, expected))
        for a, b in zip(jax.tree.leaves(ours_grad), jax.tree.leaves(plain_grad), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_a_vampprior_per_class_mixes_the_encoder_s_posteriors_at_that_class_s_pseudo_inputs():
    """log p(z | y) = log (1/K) sum_j N(z | q(z | u_yj, y)), the components from the unconditional encoder of
    [u_yj, e_y] drawn from the same key, by scipy."""
    vae = build_model(ModelConfig((8, 8), hidden=(16,), prior="vamp:4", condition_dim=M), key=KEY)
    pseudo = RNG.random((M, 4, 64)).astype(np.float32)
    vae = eqx.tree_at(lambda v: v.latent_prior.pseudo_inputs, vae, jnp.asarray(pseudo))
    whole = build_model(ModelConfig((64 + M,), hidden=(16,)), key=KEY)
    labels = np.array([1, 0, 2])
    z = RNG.normal(size=(2, 3, 2))
    expected = np.zeros((2, 3))
    for i, y in enumerate(labels):
        u = joined(jnp.asarray(pseudo[y]), jnp.broadcast_to(jnp.eye(M)[y], (4, M)))
        mean, log_var = np.split(np.asarray(jax.vmap(whole.encoder)(u), np.float64), 2, axis=-1)
        log_n = norm.logpdf(z[:, i, None, :], mean, np.exp(log_var / 2)).sum(-1)  # (2, 4)
        expected[:, i] = logsumexp(log_n, axis=-1) - np.log(4)
    log_p = vae.prior(jax.nn.one_hot(labels, M)).log_prob(jnp.asarray(z, jnp.float32))
    np.testing.assert_allclose(log_p, expected, rtol=1e-5, atol=1e-5)


def numpy_mlp(net, h, c=None):
    """A jaxvae MLP (tanh) in float64 NumPy: h (..., in) and c (m,) or None -> (..., out)."""
    weights = [(np.asarray(l.weight, np.float64), np.asarray(l.bias, np.float64)) for l in net.layers]
    out = h @ weights[0][0].T + weights[0][1]
    if net.condition is not None:
        out = out + np.asarray(net.condition, np.float64) @ c
    for w, b in weights[1:]:
        out = np.tanh(out) @ w.T + b
    return out


def numpy_log_p_x(vae, inference: str, x: np.ndarray, c: np.ndarray) -> float:
    """log p(x | c) of a deep model with two one-dimensional layers and Bernoulli pixels, its networks written
    out in NumPy, by the trapezoid rule over (z_1, z_2) on [-16, 16]^2."""
    grid = np.linspace(-16, 16, 801)
    prior = vae.latent_prior
    if hasattr(prior, "network"):  # p(z_2 | c), a network of c
        mean, log_var = numpy_mlp(prior.network, c)
        log_top = norm.logpdf(grid, mean, np.exp(log_var / 2))
    elif hasattr(prior, "logits"):  # a mixture per class
        y = int(np.argmax(c))
        means, sds = np.asarray(prior.means[y, :, 0]), np.exp(np.asarray(prior.log_vars[y, :, 0]) / 2)
        log_top = logsumexp(log_softmax(np.asarray(prior.logits[y])) + norm.logpdf(grid[:, None], means, sds), axis=1)
    else:
        log_top = norm.logpdf(grid)
    if inference == "bottom-up":
        params = numpy_mlp(vae.down[0].network, grid[:, None], c)  # p(z_1 | z_2, c) at each z_2
    else:
        block = vae.blocks[0]
        state = np.tanh(numpy_mlp(block.state.network, grid[:, None], c))
        head = block.prior_head.network
        params = state @ np.asarray(head.weight, np.float64).T + np.asarray(head.bias, np.float64)
    log_down = norm.logpdf(grid[None, :], params[:, :1], np.exp(params[:, 1:] / 2))  # (z_2, z_1)
    logits = numpy_mlp(vae.decoder, grid[:, None], c)  # (z_1, d)
    log_lik = np.sum(x * logits - np.logaddexp(0, logits), axis=1)
    log_f = log_top[:, None] + log_down + log_lik[None, :]
    top = log_f.max()
    return top + np.log(np.trapezoid(np.trapezoid(np.exp(log_f - top), grid, axis=1), grid))


def louder(vae, factor: float = 4.0):
    """The model with every condition weight W_c (every field `condition`) times `factor`: c moves each network's
    output further, so that a c sent to the wrong network, or to none, shows."""
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, a: a * factor if "condition" in jax.tree_util.keystr(path) else a, eqx.filter(vae, eqx.is_array)
    )
    return eqx.combine(scaled, vae)


@pytest.mark.slow
@pytest.mark.parametrize(
    "inference, prior",
    [("top-down", "normal"), ("top-down", "conditional"), ("bottom-up", "conditional"), ("bottom-up", "mixture:2")],
)
def test_a_conditional_deep_model_s_l_k_converges_to_the_numpy_quadrature_of_log_p_x_given_c(inference, prior):
    """Every layer's network takes c (the first trunk or q(z_1 | x, c), each state or p(z_1 | z_2, c), the top
    prior, the decoder): L_4000 within 4 standard errors (of log mean w, by the delta method) of log p(x | c),
    written out independently in NumPy; the same x under another class is further away than that."""
    config = ModelConfig(
        (4,), latent_dim=2, layers=(1, 1), hidden=(6,), inference=inference, prior=prior, condition_dim=M
    )
    vae = louder(build_model(config, key=jax.random.PRNGKey(7)))
    x = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 1]], np.float32)
    log_w = np.asarray(
        log_importance_weights(vae, jnp.asarray(x), key=jax.random.PRNGKey(8), samples=4000, c=C), np.float64
    )
    l_k = logsumexp(log_w, axis=0) - np.log(4000)
    w = np.exp(log_w - log_w.max(0))
    standard_error = w.std(0) / w.mean(0) / np.sqrt(4000)
    c = np.asarray(C, np.float64)
    expected = np.array([numpy_log_p_x(vae, inference, xi, ci) for xi, ci in zip(x, c, strict=True)])
    other = np.array([numpy_log_p_x(vae, inference, xi, ci) for xi, ci in zip(x, np.roll(c, 1, 1), strict=True)])
    assert np.all(np.abs(l_k - expected) < 4 * standard_error + 1e-3), (l_k, expected, standard_error)
    assert np.max(np.abs(other - expected)) > 5 * np.max(standard_error), (other, expected)


BEFORE = {  # parameter sums, ELBO and L_5 at fixed keys, as computed at commit 7980e5a (parts without c)
    "gated": (dict(architecture="gated", hidden=(16,)), -19.493925094604492,
              [-55.56792449951172, -52.526798248291016, -62.616180419921875],
              [-47.897735595703125, -46.63323974609375, -48.74889373779297]),
    "conv": (dict(architecture="conv", hidden=(4, 8)), 7.210649490356445,
             [-44.627742767333984, -44.665016174316406, -44.635433197021484],
             [-44.488197326660156, -44.823768615722656, -44.453086853027344]),
    "full": (dict(posterior="full", hidden=(16,)), -6.006739616394043,
             [-45.6730842590332, -45.66227722167969, -46.16060256958008],
             [-45.386375427246094, -44.790283203125, -44.90125274658203]),
    "iaf": (dict(posterior="iaf:2", hidden=(16,)), 89.69357299804688,
            [-45.59451675415039, -45.87584686279297, -45.22433090209961],
            [-45.64671325683594, -45.06983947753906, -45.080810546875]),
    "mixture": (dict(prior="mixture:3", hidden=(16,)), -7.009296894073486,
                [-46.24480438232422, -46.451820373535156, -45.85410690307617],
                [-45.89263916015625, -45.466224670410156, -45.830787658691406]),
    "vamp": (dict(prior="vamp:3", hidden=(16,)), 3.0682296752929688,
             [-45.08664321899414, -45.17475128173828, -45.67129898071289],
             [-45.441505432128906, -44.72118377685547, -45.2896728515625]),
    "top-down": (dict(layers=(2, 1), latent_dim=3, hidden=(16, 8), prior="vamp:2"), 17.174949645996094,
                 [-45.91972351074219, -45.5477294921875, -46.12069320678711],
                 [-45.77930450439453, -45.557945251464844, -45.094215393066406]),
    "bottom-up": (dict(layers=(2, 1), latent_dim=3, hidden=(16,), inference="bottom-up", architecture="gated",
                       prior="mixture:2"), -7.598806858062744,
                  [-58.6276741027832, -46.813236236572266, -112.13510131835938],
                  [-54.834495544433594, -46.89445495605469, -62.66370391845703]),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", BEFORE)
def test_without_a_condition_every_part_s_numbers_are_those_from_before(name):
    options, total, elbos, bounds = BEFORE[name]
    vae = build_model(ModelConfig((8, 8), **options), key=KEY)
    leaves = jax.tree.leaves(eqx.filter(vae, eqx.is_array))
    np.testing.assert_allclose(float(sum(jnp.sum(leaf) for leaf in leaves)), total, rtol=1e-6)
    np.testing.assert_allclose(elbo(vae, X, key=jax.random.PRNGKey(1)).elbo, elbos, rtol=1e-6)
    np.testing.assert_allclose(iwae(vae, X, key=jax.random.PRNGKey(2), samples=5), bounds, rtol=1e-6)


@pytest.fixture
def no_figures(monkeypatch):
    monkeypatch.setattr("jaxvae.plots.write_figures", lambda *args: None)  # not under test here


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        ["--architecture", "conv", "--hidden", "4", "--posterior", "iaf:1"],
        ["--architecture", "gated", "--posterior", "full"],
        ["--latent-dim", "2,1", "--prior", "vamp:3"],
        ["--latent-dim", "2,1", "--inference", "bottom-up", "--prior", "mixture:3"],
    ],
)
def test_each_part_trains_and_evaluates_with_a_condition(tmp_path, capsys, no_figures, options):
    out = tmp_path / "run"
    train = ["train", "--dataset", "digits", "--condition", "label", "--epochs", "1", "--hidden", "16"]
    code, err = run_main([*train, "--batch-size", "64", *options, "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["model"]["condition_dim"] == 10
    assert main(["evaluate", str(out), "--iw-samples", "10", "--n", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["log_likelihood_per_class"]) == 10 and result["log_likelihood"] < 0
    assert result["elbo"] <= result["log_likelihood"] + 0.5  # L_10 >= ELBO, up to the noise of 20 examples' draws
    assert main(["sample", str(out), "--label", "3", "-n", "4", "-o", str(tmp_path / "three.png")]) == 0
    capsys.readouterr()
    samples = np.load(tmp_path / "three.npz")
    assert samples["x"].shape == (4, 8, 8) and np.all((samples["x"] >= 0) & (samples["x"] <= 1))


def documented_conditional_model() -> tuple[str, list[str]]:
    """The Models page's section "A conditional model's networks": its Python block and its train command."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    section = page.split("### A conditional model's networks", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return code, shlex.split(re.search(r"^jaxvae (train .*)$", section, re.M).group(1))


@pytest.mark.slow
def test_the_documented_conditional_model_file_trains_and_evaluates(tmp_path, capsys, no_figures):
    """The page's model file, its encoder of (x, c) in place, trained (1 epoch here) and evaluated; a file
    whose model takes no condition is one line and exit code 2 for a conditional run, before any folder."""
    code, args = documented_conditional_model()
    (tmp_path / "my_conditional_model.py").write_text(code)
    out = tmp_path / "run"
    args[args.index("--out") + 1], args[args.index("--epochs") + 1] = str(out), "1"
    args[args.index("--model") + 1] = f"{tmp_path / 'my_conditional_model.py'}:build"
    code, err = run_main([*args, "--hidden", "16", "--quiet"], capsys)
    assert code == 0, err
    assert main(["evaluate", str(out), "--iw-samples", "10", "--n", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["log_likelihood"] < 0
    unconditional = "import dataclasses\nimport jaxvae\n\ndef build(config, key):\n"
    unconditional += "    return jaxvae.build_model(dataclasses.replace(config, condition_dim=0), key=key)\n"
    (tmp_path / "plain.py").write_text(unconditional)
    args[args.index("--model") + 1], args[args.index("--out") + 1] = (
        f"{tmp_path / 'plain.py'}:build",
        str(tmp_path / "no"),
    )
    code, err = run_main([*args, "--quiet"], capsys)
    assert code == 2 and "takes a condition of size 0, the run's is of size 10" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "no").exists()
