"""`jaxvae explore`: a local web page that decodes the latent point under the pointer.

The server (the standard library's `ThreadingHTTPServer`) answers a fixed set of routes and never
maps a URL to a file: the page and its script come from the package, `/model.json` is built in
memory from the run once at start-up, and `/decode?z=z1,...,zk` computes the mean of p(x|z) with JAX.
`/model.json` holds the test set's posterior means and standard deviations (up to `MAX_POINTS`
examples), their labels (and the labels' names, for an image folder) and pixels, and, when the decoder
is an MLP the page can run, its weights: the page then decodes in JavaScript with no round trip, and
otherwise calls `/decode`.

A run conditioned on the labels (`--condition label`) gets a class selector: the page decodes z under the
chosen class y, the mean of p(x | z, y) (`/decode?z=z1,...,zk&y=Y`; in the page, the decoder's first layer
adds its condition weights' column y), and draws p(z | y) of that class, mean +- 1 and 2 standard deviations,
over the scatter. The scatter's points are then the means of q(z | x, y) of the examples under their own
labels, and a clicked example is reconstructed under its own label.
"""

import base64
import json
import math
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.builder import ACTIVATIONS, build_binarization
from jaxvae.distributions import Normal
from jaxvae.errors import InputError
from jaxvae.evaluate import decoded_means, posterior_moments
from jaxvae.keys import DataSeed
from jaxvae.model import LatentModel
from jaxvae.networks import MLP, Linear, image_shape

MAX_POINTS = 2000  # test examples shown in the scatter, a seeded subset of larger test sets
BROWSER_LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian")  # whose means explore.js computes
PAGE = files("jaxvae") / "explore_page"
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"), "/explore.js": ("explore.js", "text/javascript")}


def _f32(a) -> str:
    """An array as base64 of its little-endian float32 bytes (row-major), for a JS Float32Array."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def browser_decoder(vae: LatentModel) -> dict | None:
    """The decoder as weights the page can run, or None when it is not an MLP of Linear layers and an
    activation it knows (one of `builder.ACTIVATIONS`, by its option's name).

    Each layer is {"in", "out", "weight": (out, in) row-major, "bias": (out,)}, both base64 float32;
    the activation follows every layer but the last, whose output parameterizes `likelihood`. A conditional
    decoder's condition weights W_c (first width, m), added as W_c c to the first layer, are "condition"
    (row-major, base64 float32), with "condition_dim" m; both None without a condition.
    """
    decoder = getattr(vae, "decoder", None)
    if not (
        isinstance(decoder, MLP)
        and getattr(getattr(vae, "likelihood", None), "name", None) in BROWSER_LIKELIHOODS
        and all(type(layer) is Linear for layer in decoder.layers)
    ):
        return None
    activation = next((name for name, f in ACTIVATIONS.items() if f is decoder.activation), None)
    if activation is None:
        return None
    layers = []
    for layer in decoder.layers:
        weight = np.asarray(layer.weight)
        bias = np.zeros(weight.shape[0]) if layer.bias is None else np.asarray(layer.bias)
        layers.append({"in": weight.shape[1], "out": weight.shape[0], "weight": _f32(weight), "bias": _f32(bias)})
    condition = None if decoder.condition is None else np.asarray(decoder.condition)
    return {
        "activation": activation,
        "layers": layers,
        "condition": None if condition is None else _f32(condition),
        "condition_dim": None if condition is None else condition.shape[1],
    }


def class_priors(vae: LatentModel, classes: int) -> dict | None:
    """p(z | y) of every class y of a model conditioned on labels one-hot: {"mean", "std"}, each (classes, k)
    lists; None where the prior is not Gaussian."""
    prior = vae.prior(jnp.eye(classes))
    if not isinstance(prior, Normal):
        return None
    shape = (classes, vae.latent_dim)
    return {"mean": np.broadcast_to(prior.mean, shape).tolist(), "std": np.broadcast_to(prior.std, shape).tolist()}


def display_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(height, width, channels) to draw one example: images as they are, other vectors as one row."""
    from jaxvae.plots import is_image

    if is_image(shape):
        return image_shape(shape)
    return (1, math.prod(shape), 1)


class Explorer:
    """A run made ready to serve: the model, a compiled decoder and the page's `/model.json` bytes; `classes`,
    the number of classes of a run conditioned on the labels (0 for a model of p(x))."""

    def __init__(
        self,
        run_dir: str | Path,
        max_points: int = MAX_POINTS,
        dataset: str | Path | None = None,
        data_dir: str | Path | None = None,
    ):
        from jaxvae.config import RunConfig
        from jaxvae.run_data import evaluation_split, load_data
        from jaxvae.runs import CONFIG
        from jaxvae.semisupervised import SemiSupervisedVAE
        from jaxvae.train import load

        run_dir = Path(run_dir)
        config = RunConfig.load(run_dir / CONFIG)
        if config.model.condition_dim and config.train.condition != "label" and not config.train.labels:
            raise InputError(
                f"jaxvae explore chooses the condition among the classes: it does not take a run trained with "
                f"--condition {config.train.condition}"
            )
        self.classes = config.model.condition_dim
        model = load(run_dir)
        self.vae = model.vae if isinstance(model, SemiSupervisedVAE) else model  # M2 (--labels): its VAE of x given y
        data = load_data(config, dataset=dataset, data_dir=data_dir)
        x_test, y_test = evaluation_split(data, "test", build_binarization(config.train))
        keep = np.arange(len(x_test))
        if len(keep) > max_points:
            keep = np.sort(np.random.default_rng(DataSeed.EXPLORE_SUBSET).choice(len(keep), max_points, replace=False))
        x = x_test[keep]
        labels = None if y_test is None else y_test[keep].tolist()
        if self.classes and labels is None:
            raise InputError("a run conditioned on the labels is explored on labelled data: these have none")
        c = jax.nn.one_hot(np.asarray(labels), self.classes) if self.classes else None
        mean, std = posterior_moments(self.vae, x, c=c)
        self.decode(np.zeros(self.vae.latent_dim), 0 if self.classes else None)  # compile now, not on a request
        pixels = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
        condition = {"classes": self.classes, "prior": class_priors(self.vae, self.classes)} if self.classes else None
        payload = {
            "run": run_dir.resolve().name,
            "dataset": config.train.dataset,
            "shape": display_shape(tuple(config.model.data_shape)),
            "latent_dim": self.vae.latent_dim,
            "likelihood": getattr(getattr(self.vae, "likelihood", None), "name", None),
            "decoder": browser_decoder(self.vae),
            "condition": condition,
            "points": {
                "n": len(x),
                "mean": np.asarray(mean).tolist(),
                "std": np.asarray(std).tolist(),
                "label": labels,
                "classes": list(data.classes) or None,
                "pixels": base64.b64encode(pixels.tobytes()).decode("ascii"),
            },
        }
        self.model_json = json.dumps(payload).encode()

    def decode(self, z: np.ndarray, label: int | None = None) -> np.ndarray:
        """The mean of p(x|z) for one latent point z (k,), or of p(x | z, y) under the class `label` of a
        conditional run, as float32 (d,)."""
        c = None if label is None else jax.nn.one_hot(jnp.array([label]), self.classes)
        return np.asarray(decoded_means(self.vae, jnp.asarray(z, jnp.float32)[None], c=c))[0]

    def parse_query(self, query: str) -> tuple[np.ndarray, int | None]:
        """(z, label) from a query string `z=z1,...,zk` (k finite numbers), with `&y=Y` (a class 0 to C - 1)
        for a conditional run and without for the others (label None); anything else is an InputError."""
        try:
            fields = parse_qs(query, keep_blank_values=True, strict_parsing=True, max_num_fields=4)
        except ValueError:
            raise InputError("malformed query string") from None
        if set(fields) - {"z", "y"}:
            raise InputError("the query takes z=z1,...,zk" + (" and y=Y" if self.classes else ""))
        return self._parse_z(fields.get("z", [])), self._parse_label(fields.get("y"))

    def _parse_label(self, values: list[str] | None) -> int | None:
        """The class of a conditional run's query from its `y` values (one integer 0 to C - 1), None for the
        others (which take no y)."""
        if not self.classes:
            if values is not None:
                raise InputError("this run is not conditional: give z only")
            return None
        if values is None or len(values) != 1:
            raise InputError("give the class once, as y=Y")
        try:
            label = int(values[0])
        except ValueError:
            label = -1
        if not 0 <= label < self.classes:
            raise InputError(f"y must be a class 0 to {self.classes - 1}")
        return label

    def _parse_z(self, values: list[str]) -> np.ndarray:
        """z from the query's `z` values: one list of k finite numbers."""
        if len(values) != 1:
            raise InputError("give the latent point once, as z=z1,...,zk")
        try:
            z = np.array([float(v) for v in values[0].split(",")])
        except ValueError:
            raise InputError("z must be comma-separated numbers") from None
        if len(z) != self.vae.latent_dim:
            raise InputError(f"z needs {self.vae.latent_dim} values, got {len(z)}")
        if not np.all(np.isfinite(z)):
            raise InputError("z must be finite")
        return z


class Handler(BaseHTTPRequestHandler):
    """GET and HEAD on the fixed routes; 404 for every other path, 405 for every other method."""

    server: "ExploreServer"
    protocol_version = "HTTP/1.1"
    timeout = 2  # seconds an idle keep-alive connection is held, so closing the server waits at most this

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path in ASSETS:
            name, content_type = ASSETS[url.path]
            self._send(HTTPStatus.OK, (PAGE / name).read_bytes(), content_type)
        elif url.path == "/model.json":
            self._send(HTTPStatus.OK, self.server.explorer.model_json, "application/json")
        elif url.path == "/decode":
            try:
                z, label = self.server.explorer.parse_query(url.query)
            except InputError as e:
                return self._send(HTTPStatus.BAD_REQUEST, f"{e}\n".encode(), "text/plain; charset=utf-8")
            mean = self.server.explorer.decode(z, label)
            self._send(HTTPStatus.OK, json.dumps({"mean": mean.tolist()}).encode(), "application/json")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def do_HEAD(self):
        self.do_GET()

    def __getattr__(self, name: str):
        if name.startswith("do_"):  # any other method: POST, PUT, DELETE, made-up ones
            return lambda: self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", "text/plain")
        raise AttributeError(name)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # quiet: the page makes a request per visit, not worth a line each


class ExploreServer(ThreadingHTTPServer):
    """The HTTP server of the explore page: each request is answered by `Handler` from the `explorer`."""

    # handler threads are joined on close: a daemon thread cut off by interpreter exit can abort the process
    daemon_threads = False

    def __init__(self, explorer: Explorer, host: str, port: int):
        self.explorer = explorer
        super().__init__((host, port), Handler)

    def handle_error(self, request, client_address):
        print(f"jaxvae explore: error answering {client_address[0]}: {sys.exc_info()[1]!r}", file=sys.stderr)

    @property
    def url(self) -> str:
        """The address the page is served at, http://HOST:PORT/."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    dataset: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> ExploreServer:
    """A server for the run in `run_dir`, bound but not yet serving; port 0 picks a free port. The run's data
    are read from `dataset` and `data_dir` when given (see `run_data.load_data`)."""
    explorer = Explorer(run_dir, dataset=dataset, data_dir=data_dir)
    try:
        return ExploreServer(explorer, host, port)
    except (OSError, OverflowError) as e:  # address in use or unknown; a port outside 0-65535
        raise InputError(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
