"""`jaxvae explore`: what the server answers and refuses, and the page driven in headless Chromium.

The references: the page's pixels are compared with JAX's `vae.decode(z).mean` and `vae.encode(x)` of
the same run (rounded to 8 bits as the page draws them), and the browser's decoder with JAX's on
every likelihood and activation; routes outside the fixed set must answer 4xx and leak nothing. A run
conditioned on the labels is decoded under the chosen class y, against `vae.decode(z, one_hot(y))`.
"""

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import spawn
from jaxvae import checkpoint, explore
from jaxvae.builder import build_model
from jaxvae.cli import main
from jaxvae.config import ACTIVATIONS, ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.runs import CHECKPOINTS, CONFIG
from jaxvae.train import fit, init_state, load

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECRET = "jaxvae-explore-secret-7f3a"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained run on digits (2 epochs, 32 hidden units), with a secret file beside it."""
    root = tmp_path_factory.mktemp("explore")
    (root / "secret.txt").write_text(SECRET)
    config = RunConfig(ModelConfig(data_shape=(8, 8), hidden=(32,)), TrainConfig(epochs=2))
    fit(config, load_dataset("digits"), root / "run", progress=False)
    return root / "run"


def untrained_run(path: Path, edit=None, condition: str = "", **model) -> Path:
    """A run folder holding a freshly initialized digits model, optionally changed by `edit(vae)`; with
    `condition` "label", conditioned on the labels (pass condition_dim=10)."""
    config = RunConfig(ModelConfig(data_shape=(8, 8), **model), TrainConfig(condition=condition))
    state = init_state(config)
    if edit is not None:
        state = state._replace(vae=edit(state.vae))
    path.mkdir(parents=True)
    config.save(path / CONFIG)
    checkpoint.save(path / CHECKPOINTS / "epoch-00001.eqx", state)
    return path


@contextmanager
def serving(run: Path):
    server = explore.make_server(run, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(run_dir):
    with serving(run_dir) as server:
        yield server


def request(server, path: str, method: str = "GET") -> tuple[int, bytes]:
    """Send `path` exactly as written (no normalization by the client)."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def pixels(values) -> np.ndarray:
    """Values in [0, 1] as the page draws them: clipped, times 255, rounded."""
    return np.round(np.clip(np.asarray(values, np.float64), 0, 1) * 255).astype(int)


@pytest.mark.slow
def test_fixed_routes_serve_the_page_and_the_run(run_dir, server):
    vae = load(run_dir)
    x_test = load_dataset("digits").x_test
    status, page = request(server, "/")
    assert status == 200 and b'<script src="explore.js">' in page
    assert request(server, "/explore.js")[0] == 200
    assert request(server, "/?from=bookmark")[0] == 200
    assert request(server, "/", "HEAD") == (200, b"")
    status, body = request(server, "/model.json")
    assert status == 200
    model = json.loads(body)
    points = model["points"]
    assert model["latent_dim"] == 2 and model["shape"] == [8, 8, 1] and points["n"] == len(x_test) == 359
    q = vae.encode(jnp.asarray(x_test))  # the reference: JAX's encoder on the whole digits test split
    np.testing.assert_allclose(points["mean"], q.mean, rtol=1e-6)
    np.testing.assert_allclose(points["std"], q.std, rtol=1e-6)
    assert points["label"] == load_dataset("digits").y_test.tolist()
    stored = np.frombuffer(__import__("base64").b64decode(points["pixels"]), np.uint8).reshape(-1, 64)
    np.testing.assert_array_equal(stored, pixels(x_test))


@pytest.mark.slow
def test_large_test_sets_are_a_seeded_subset(run_dir):
    """MAX_POINTS caps the scatter; the kept examples are distinct test examples with their own codes."""
    explorer = explore.Explorer(run_dir, max_points=50)
    points = json.loads(explorer.model_json)["points"]
    x_test = load_dataset("digits").x_test
    stored = np.frombuffer(__import__("base64").b64decode(points["pixels"]), np.uint8).reshape(-1, 64)
    assert points["n"] == 50 and len({row.tobytes() for row in stored}) == 50
    rows = [int(np.flatnonzero((pixels(x_test) == row).all(1))[0]) for row in stored]
    np.testing.assert_allclose(points["mean"], explorer.vae.encode(jnp.asarray(x_test[rows])).mean, rtol=1e-6)
    assert json.loads(explore.Explorer(run_dir, max_points=50).model_json)["points"] == points


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [
        "/config.json",
        "/metrics.jsonl",
        "/checkpoints/",
        "/figures/latent_scatter.png",
        "/secret.txt",
        "/../secret.txt",
        "/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%2fsecret.txt",
        "/..%252fsecret.txt",
        "/explore.js/../../secret.txt",
        "/model.json/..",
        "/decode/../secret.txt",
        "//etc/passwd",
        "/etc/passwd",
        "/index.html",
        "/explore.py",
        "/explore_page/explore.js",
        "/%00",
        "/.%00./secret.txt",
        "/..\\secret.txt",
        "*",
    ],
)
def test_paths_outside_the_routes_are_refused(server, path):
    status, body = request(server, path)
    assert 400 <= status < 500, (path, status)
    assert SECRET.encode() not in body and b"Traceback" not in body and b"{" not in body


@pytest.mark.slow
def test_other_methods_and_malformed_requests_get_4xx(server):
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "BREW"):
        assert request(server, "/", method)[0] == 405, method
    with socket.create_connection(server.server_address[:2], timeout=30) as s:
        s.sendall(b"NOT A REQUEST\r\n\r\n")  # no HTTP version: answered with the bare error page
        answer = b"".join(iter(lambda: s.recv(4096), b""))
    assert b"Error code: 400" in answer and b"Traceback" not in answer


@pytest.mark.slow
def test_decode_endpoint_matches_jax_and_validates_z(run_dir, server):
    vae = load(run_dir)
    status, body = request(server, "/decode?z=0.5,-1.25")
    assert status == 200
    expected = vae.decode(jnp.array([[0.5, -1.25]])).mean[0]  # the reference: JAX in this process
    np.testing.assert_allclose(json.loads(body)["mean"], expected, rtol=1e-6)
    for query in [
        "",
        "z=",
        "z=1",
        "z=1,2,3",
        "z=a,b",
        "z=nan,0",
        "z=inf,0",
        "z=1e999,0",
        "z=1,2&z=1,2",
        "q=1,2",
        "z=1;2",
        "z=%ff,1",
        "z=1,2&&&&&&",
    ]:
        status, body = request(server, f"/decode?{query}")
        assert status == 400, (query, status)
        assert b"Traceback" not in body and len(body.splitlines()) == 1, body


@pytest.mark.slow
def test_decoders_the_page_cannot_run_are_left_to_the_server(run_dir):
    """A decoder that is not an MLP of Linear layers (say convolutional) is not exported."""
    vae = load(run_dir)
    assert explore.browser_decoder(vae)["activation"] == "tanh"
    other = eqx.nn.Sequential([eqx.nn.Lambda(jnp.tanh)])
    assert explore.browser_decoder(eqx.tree_at(lambda m: m.decoder, vae, other)) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, ignored",
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, True)],
    ids=["ctrl-c", "ctrl-c, started with it ignored", "sigterm, started with it ignored"],
)
def test_cli_serves_until_interrupted(run_dir, signum, ignored):
    """Ctrl-C or SIGTERM stops the server with exit code 0, even when the command started with both ignored
    (as a shell's background job starts with SIGINT ignored)."""
    command = [sys.executable, "-m", "jaxvae.cli", "explore", str(run_dir), "--port", "0"]
    with spawn(command, ignored, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        line = process.stdout.readline()
        assert line.startswith(f"exploring {run_dir} at http://127.0.0.1:"), line + process.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0, process.stderr.read()


@pytest.mark.slow
def test_cli_bad_input_exits_2_with_one_line(run_dir, tmp_path, capsys):
    for args in ([str(tmp_path / "missing")], [str(run_dir), "--port", "70000"], [str(run_dir), "--port", "x"]):
        try:
            code = main(["explore", *args])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
        stderr = capsys.readouterr().err
        assert code == 2, (args, stderr)
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr


# --- the page in a real browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium to run the explore page's browser test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def open_page(browser, url: str):
    """A page at `url`, ready; yields (page, problems): console errors and uncaught exceptions."""
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        yield page, problems
    finally:
        page.close()


def canvas_pixels(page, selector: str) -> np.ndarray:
    """The red channel of a greyscale image canvas, (H, W) ints."""
    data = page.evaluate(
        """s => { const c = document.querySelector(s);
                   return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""",
        selector,
    )
    rgba = np.array(data).reshape(-1, 4)
    assert (rgba[:, 0] == rgba[:, 1]).all() and (rgba[:, 3] == 255).all()
    return rgba[:, 0].reshape(8, 8)


@pytest.mark.slow
@pytest.mark.parametrize("in_browser", [True, False], ids=["decoder-in-page", "decoder-on-server"])
def test_page_decodes_under_the_pointer_and_shows_a_clicked_example(browser, run_dir, monkeypatch, in_browser):
    if not in_browser:
        monkeypatch.setattr(explore, "browser_decoder", lambda vae: None)
    vae = load(run_dir)
    x_test = load_dataset("digits").x_test
    with serving(run_dir) as server, open_page(browser, server.url) as (page, problems):
        assert page.evaluate("jaxvaeExplore.model.decoder !== null") == in_browser
        box = page.locator("#scatter").bounding_box()
        drawn = []
        for fx, fy in [(0.3, 0.3), (0.75, 0.7)]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            page.evaluate("jaxvaeExplore.idle()")
            z = page.evaluate("Array.from(jaxvaeExplore.state.z)")
            image = canvas_pixels(page, "#decoded")
            expected = pixels(vae.decode(jnp.array([z], jnp.float32)).mean[0]).reshape(8, 8)
            assert np.abs(image - expected).max() <= 1, (z, image, expected)
            drawn.append((z, image))
        assert drawn[0][0][0] < drawn[1][0][0] and drawn[0][0][1] > drawn[1][0][1]  # right and down
        assert np.abs(drawn[0][1] - drawn[1][1]).max() > 10, "moving the pointer did not change the image"

        # click the example whose point is farthest from all others, so the click can only mean it
        where = np.array(
            page.evaluate(
                "[...Array(jaxvaeExplore.model.points.n).keys()].map(i => "
                "{ const p = jaxvaeExplore.pointOnScreen(i); return [p.x, p.y]; })"
            )
        )
        gaps = np.linalg.norm(where[:, None] - where[None], axis=-1) + np.eye(len(where)) * 1e9
        i = int(np.argmax(gaps.min(1)))
        page.mouse.click(*where[i])
        page.wait_for_selector(f"#selected[data-example='{i}']", timeout=30_000)
        q = vae.encode(jnp.asarray(x_test[i]))
        np.testing.assert_array_equal(canvas_pixels(page, "#original"), pixels(x_test[i]).reshape(8, 8))
        recon = pixels(vae.decode(q.mean).mean).reshape(8, 8)
        assert np.abs(canvas_pixels(page, "#reconstruction") - recon).max() <= 1
        info = page.locator("#selection-info").inner_text()
        assert f"test example {i}, label {load_dataset('digits').y_test[i]}" in info
        assert ", ".join(f"{s:.2f}" for s in np.asarray(q.std)) in info
        assert problems == []


def saturate_and_straddle_zero(vae):
    """Final-layer logits from -40 to 40 and within 0.01 of 0: the saturated and the Taylor branches."""
    last = vae.decoder.layers[-1]
    bias = jnp.concatenate([jnp.linspace(-40, 40, 32), jnp.linspace(-0.009, 0.009, 32)])
    return eqx.tree_at(
        lambda m: (m.decoder.layers[-1].weight, m.decoder.layers[-1].bias), vae, (last.weight * 1e-3, bias)
    )


@pytest.fixture(scope="module")
def page(browser, server):
    """One page of the trained run, for tests that only call its functions."""
    with open_page(browser, server.url) as (page, problems):
        yield page
        assert problems == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "likelihood, activation, hidden, edit",
    [
        ("bernoulli", "tanh", (16,), None),
        ("bernoulli", "relu", (), saturate_and_straddle_zero),
        ("continuous-bernoulli", "gelu", (16, 8), None),
        ("continuous-bernoulli", "elu", (8,), saturate_and_straddle_zero),
        ("gaussian", "softplus", (8,), None),
        ("gaussian", "sigmoid", (8, 8), None),
        ("gaussian", "silu", (8,), saturate_and_straddle_zero),
    ],
)
def test_page_decoder_matches_jax(page, likelihood, activation, hidden, edit):
    """The page's JavaScript MLP against `vae.decode(z).mean` computed by JAX (float32), z ~ 3 N(0, I)."""
    config = ModelConfig(data_shape=(8, 8), likelihood=likelihood, activation=activation, hidden=hidden)
    vae = build_model(config, key=jax.random.PRNGKey(0))
    vae = vae if edit is None else edit(vae)
    z = 3 * np.random.default_rng(0).normal(size=(5, 2))
    spec = explore.browser_decoder(vae)
    got = page.evaluate(
        "([spec, likelihood, zs]) => zs.map(z => Array.from(jaxvaeExplore.browserDecoder(spec, likelihood)(z)))",
        [spec, likelihood, z.tolist()],
    )
    np.testing.assert_allclose(np.array(got), vae.decode(jnp.asarray(z, jnp.float32)).mean, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sliders_for_every_latent_dimension_above_two(browser, tmp_path):
    run = untrained_run(tmp_path / "run", latent_dim=3, hidden=(16,))
    vae = load(run)
    first = vae.encode(jnp.asarray(load_dataset("digits").x_test[0])).mean
    with serving(run) as server, open_page(browser, server.url) as (page, problems):
        sliders = page.locator("#sliders input[type=range]")
        assert sliders.count() == 3
        values = [float(sliders.nth(j).input_value()) for j in range(3)]
        np.testing.assert_allclose(values, first, atol=0.006)  # the slider step is 0.01
        before = canvas_pixels(page, "#decoded")
        sliders.nth(2).fill("2.5")
        page.evaluate("jaxvaeExplore.idle()")
        z = page.evaluate("Array.from(jaxvaeExplore.state.z)")
        assert z[2] == 2.5
        after = canvas_pixels(page, "#decoded")
        assert np.abs(after - pixels(vae.decode(jnp.array([z], jnp.float32)).mean[0]).reshape(8, 8)).max() <= 1
        assert np.abs(after - before).max() > 0
        page.select_option("#dim-y", "2")
        assert page.evaluate("jaxvaeExplore.state.dims") == [0, 2]
        assert problems == []


def test_the_page_implements_every_activation():
    """`browser_decoder` hands the page any MLP: its script must have a function for each activation name."""
    script = (explore.PAGE / "explore.js").read_text()
    table = script[script.index("const ACTIVATIONS = {") :]
    table = table[: table.index("};")]
    assert set(re.findall(r"^\s*([a-z]+)[:,]", table, re.MULTILINE)) == set(ACTIVATIONS)


def test_an_image_folder_s_class_names_reach_the_page(tmp_path, run_dir):
    """The page names labels by the class subfolders (ant, bee) where the data has them; digits' are numbers."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("ant", "bee"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    config = RunConfig(
        ModelConfig(data_shape=(4, 4), hidden=(8,)), TrainConfig(epochs=1, dataset=str(tmp_path / "imgs"))
    )
    fit(config, load_dataset(str(tmp_path / "imgs")), tmp_path / "run", progress=False)
    points = json.loads(explore.Explorer(tmp_path / "run").model_json)["points"]
    assert points["classes"] == ["ant", "bee"] and set(points["label"]) <= {0, 1}
    assert json.loads(explore.Explorer(run_dir).model_json)["points"]["classes"] is None


# --- a run conditioned on the labels: the class selector -------------------------------------------------


def one_hot(labels) -> jax.Array:
    return jax.nn.one_hot(jnp.asarray(labels), 10)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    """A digits model conditioned on the labels, with a prior network, freshly initialized."""
    path = tmp_path_factory.mktemp("explore-conditional") / "run"
    return untrained_run(path, condition="label", condition_dim=10, prior="conditional", hidden=(16,))


@pytest.mark.slow
def test_a_conditional_run_serves_its_classes_and_decodes_under_the_class_asked(conditional_run, server):
    """model.json: the means of q(z | x, y) of the test digits under their labels, and p(z | y) of each class;
    /decode?z=..&y=Y: vae.decode(z, one_hot(Y)).mean; a y missing, outside the classes or given to an
    unconditional run: 400 with one line."""
    vae = load(conditional_run)
    data = load_dataset("digits")
    with serving(conditional_run) as conditional:
        model = json.loads(request(conditional, "/model.json")[1])
        q = vae.encode(jnp.asarray(data.x_test), one_hot(data.y_test))
        np.testing.assert_allclose(model["points"]["mean"], q.mean, rtol=1e-5, atol=1e-6)
        prior = vae.prior(jnp.eye(10))
        assert model["condition"]["classes"] == 10
        np.testing.assert_allclose(model["condition"]["prior"]["mean"], prior.mean, rtol=1e-6)
        np.testing.assert_allclose(model["condition"]["prior"]["std"], prior.std, rtol=1e-6)
        means = []
        for y in (3, 7):
            status, body = request(conditional, f"/decode?z=0.5,-1.25&y={y}")
            assert status == 200
            means.append(json.loads(body)["mean"])
            expected = vae.decode(jnp.array([[0.5, -1.25]]), one_hot([y])).mean[0]
            np.testing.assert_allclose(means[-1], expected, rtol=1e-5, atol=1e-6)
        assert np.abs(np.subtract(*means)).max() > 1e-3  # the class changes the image
        for query in ["z=0.5,1", "z=0.5,1&y=10", "z=0.5,1&y=-1", "z=0.5,1&y=a", "z=0.5,1&y=1&y=2", "z=0.5,1&y="]:
            status, body = request(conditional, f"/decode?{query}")
            assert status == 400 and len(body.splitlines()) == 1, (query, status, body)
    status, body = request(server, "/decode?z=0.5,1&y=1")
    assert status == 400 and b"not conditional" in body
    assert json.loads(request(server, "/model.json")[1])["condition"] is None


@pytest.mark.slow
@pytest.mark.parametrize("in_browser", [True, False], ids=["decoder-in-page", "decoder-on-server"])
def test_the_class_selector_decodes_under_the_chosen_class(browser, conditional_run, monkeypatch, in_browser):
    """Choosing class 7 then 2 in the page: the decoded image is vae.decode(z, one_hot(y)).mean, the caption names
    y; a clicked example is reconstructed under its own label."""
    if not in_browser:
        monkeypatch.setattr(explore, "browser_decoder", lambda vae: None)
    vae = load(conditional_run)
    data = load_dataset("digits")
    with serving(conditional_run) as server, open_page(browser, server.url) as (page, problems):
        assert page.evaluate("jaxvaeExplore.model.decoder !== null") == in_browser
        assert page.locator("#class option").count() == 10
        assert page.evaluate("jaxvaeExplore.state.label") == int(data.y_test[0])
        z = [0.8, -0.4]
        page.evaluate("z => jaxvaeExplore.show(z)", z)
        for y in (7, 2):
            page.select_option("#class", str(y))
            page.evaluate("jaxvaeExplore.idle()")
            assert page.evaluate("jaxvaeExplore.state.label") == y
            expected = pixels(vae.decode(jnp.array([z]), one_hot([y])).mean[0]).reshape(8, 8)
            assert np.abs(canvas_pixels(page, "#decoded") - expected).max() <= 1, y
            assert page.locator("#decoded-caption").inner_text().endswith(f", y = {y}")
        i = 5
        page.mouse.click(*page.evaluate(f"(p => [p.x, p.y])(jaxvaeExplore.pointOnScreen({i}))"))
        page.wait_for_selector("#selected[data-example]", timeout=30_000)
        i = int(page.locator("#selected").get_attribute("data-example"))  # the point under the click
        q = vae.encode(jnp.asarray(data.x_test[i : i + 1]), one_hot(data.y_test[i : i + 1]))
        recon = pixels(vae.decode(q.mean, one_hot(data.y_test[i : i + 1])).mean[0]).reshape(8, 8)
        assert np.abs(canvas_pixels(page, "#reconstruction") - recon).max() <= 1
        assert problems == []


@pytest.mark.slow
def test_page_decoder_with_a_condition_matches_jax(page, conditional_run):
    """The page's JavaScript MLP, its first layer given column y of the condition weights, against
    `vae.decode(z, one_hot(y)).mean` by JAX, for every class."""
    vae = load(conditional_run)
    spec = explore.browser_decoder(vae)
    assert spec["condition_dim"] == 10
    z = 3 * np.random.default_rng(1).normal(size=(10, 2))
    got = page.evaluate(
        "([spec, zs]) => zs.map((z, y) => Array.from(jaxvaeExplore.browserDecoder(spec, 'bernoulli')(z, y)))",
        [spec, z.tolist()],
    )
    expected = vae.decode(jnp.asarray(z, jnp.float32), one_hot(np.arange(10))).mean
    np.testing.assert_allclose(np.array(got), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_run_conditioned_on_arrays_is_refused_with_one_line(tmp_path, capsys):
    """The selector chooses among classes: `explore` of a --condition array run exits 2 with one line."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xc.npz", x=rng.random((20, 3)).astype(np.float32), c=rng.random((20, 2)).astype(np.float32))
    config = RunConfig(
        ModelConfig(data_shape=(3,), hidden=(4,), condition_dim=2),
        TrainConfig(dataset=str(tmp_path / "xc.npz"), condition="array"),
    )
    run = tmp_path / "run"
    run.mkdir()
    config.save(run / CONFIG)
    checkpoint.save(run / CHECKPOINTS / "epoch-00001.eqx", init_state(config))
    assert main(["explore", str(run), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "does not take a run trained with --condition array" in err and len(err.strip().splitlines()) == 1, err
