"""Downloads against a local HTTP server (127.0.0.1 only) serving IDX files made by the test.

Mirrors under /good/ serve the files, /corrupt/ the same number of bytes with one changed,
/drop/ promises the whole file and closes the connection half way, /gone/ closes it before answering;
any other path is a 404.
"""

import hashlib
import http.server
import threading

import numpy as np
import pytest

from conftest import content_md5, make_idx_folder, write_idx
from jaxvae import data as data_module
from jaxvae import download
from jaxvae.data import load_dataset
from jaxvae.errors import InputError


class Mirrors(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        kind, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if kind == "gone":
            self.close_connection = True
            return
        if body is None or kind not in ("good", "corrupt", "drop"):
            self.send_error(404)
            return
        if kind == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if kind == "drop" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves four small IDX files; yields (base URL, {file: bytes}, {file: sha256}); the cache is in tmp_path."""
    images = make_idx_folder(tmp_path / "source")
    files = {p.name: p.read_bytes() for p in (tmp_path / "source").iterdir()}
    Mirrors.files, Mirrors.requests = files, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirrors)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checksums = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files, checksums, images
    httpd.shutdown()
    httpd.server_close()


def test_the_known_contents_are_md5_of_the_four_files_and_debian_s_fashion_mnist_has_them():
    """Against Debian's dataset-fashion-mnist where it is installed (MNIST's are the published ones)."""
    for name, table in download.CONTENT_MD5.items():
        assert set(table) == set(data_module.IDX_FILES.values()), name
        assert all(len(h) == 32 and int(h, 16) >= 0 for h in table.values())
    if not data_module.FASHION_MNIST_DIR.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    assert content_md5(data_module.FASHION_MNIST_DIR) == download.CONTENT_MD5["fashion-mnist"]


def test_published_checksums_are_sha256_of_the_four_files():
    for name, table in download.CHECKSUMS.items():
        assert set(table) == {stem + ".gz" for stem in data_module.IDX_FILES.values()}, name
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in table.values())
        assert download.MIRRORS[name]


@pytest.mark.parametrize("bad", ["drop", "gone"])
def test_falls_back_past_a_dropped_connection_and_a_corrupt_mirror(server, tmp_path, monkeypatch, bad):
    base, files, checksums, _ = server
    monkeypatch.setenv(download.MIRRORS_VARIABLE, f"{base}/{bad}/, {base}/corrupt/,{base}/good/")
    folder = download.fetch("mnist", str(tmp_path / "cache" / "mnist"), checksums=checksums, progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # nothing else (no .part files)
    for name in files:
        assert [r for r in Mirrors.requests if r.endswith(name)] == [
            f"/{bad}/{name}",
            f"/corrupt/{name}",
            f"/good/{name}",
        ]


def test_checksum_error_leaves_nothing_in_the_cache(server, tmp_path, monkeypatch):
    base, _, checksums, _ = server
    monkeypatch.setenv(download.MIRRORS_VARIABLE, f"{base}/corrupt/,{base}/missing/")
    with pytest.raises(InputError, match="SHA-256") as error:
        download.fetch("mnist", tmp_path / "cache" / "mnist", checksums=checksums, progress=False)
    assert "404" in str(error.value) and "\n" not in str(error.value)
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_published_checksum_rejects_other_bytes(server, tmp_path, monkeypatch):
    """Without the test's checksums the real table applies: our small files are not MNIST."""
    base, *_ = server
    monkeypatch.setenv(download.MIRRORS_VARIABLE, f"{base}/good/")
    with pytest.raises(InputError, match=download.CHECKSUMS["mnist"]["train-images-idx3-ubyte.gz"]):
        download.fetch("mnist", tmp_path / "cache" / "mnist", progress=False)
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_mnist_by_name_downloads_once_then_reads_the_cache(server, tmp_path, monkeypatch):
    base, _, checksums, images = server
    monkeypatch.setitem(download.CHECKSUMS, "mnist", checksums)
    monkeypatch.setitem(download.CONTENT_MD5, "mnist", content_md5(tmp_path / "source"))
    monkeypatch.setenv(download.MIRRORS_VARIABLE, f"{base}/good/")
    first = load_dataset("mnist", progress=False)
    np.testing.assert_allclose(first.x_train * 255, images["train"].reshape(12, 16), atol=1e-4)
    assert first.shape == (4, 4) and len(first.x_test) == 5
    served = len(Mirrors.requests)
    assert served == 4
    again = load_dataset("mnist", progress=False)  # from $XDG_CACHE_HOME/jaxvae/mnist, no request
    assert len(Mirrors.requests) == served
    np.testing.assert_array_equal(first.x_train, again.x_train)


def test_lookup_order_data_dir_then_debian_folder_then_cache(tmp_path, monkeypatch):
    """Found locally, nothing is downloaded: the only mirror is a closed loopback port."""
    monkeypatch.setenv(download.MIRRORS_VARIABLE, "http://127.0.0.1:9/")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def published(name, folder):  # the files of `folder` become those `name` publishes
        monkeypatch.setitem(download.CONTENT_MD5, name, content_md5(folder))

    debian = make_idx_folder(tmp_path / "debian", n_train=7)
    monkeypatch.setattr(data_module, "FASHION_MNIST_DIR", tmp_path / "debian")
    published("fashion-mnist", tmp_path / "debian")
    assert len(load_dataset("fashion-mnist").x_train) == 7
    np.testing.assert_allclose(load_dataset("fashion-mnist").x_test * 255, debian["t10k"].reshape(5, 16), atol=1e-4)
    make_idx_folder(tmp_path / "mine" / "fashion-mnist", n_train=9)
    published("fashion-mnist", tmp_path / "mine" / "fashion-mnist")
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path / "mine").x_train) == 9
    make_idx_folder(tmp_path / "flat", n_train=8)
    published("fashion-mnist", tmp_path / "flat")
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path / "flat").x_train) == 8
    make_idx_folder(tmp_path / "cache" / "jaxvae" / "mnist", n_train=6)
    published("mnist", tmp_path / "cache" / "jaxvae" / "mnist")
    assert len(load_dataset("mnist").x_train) == 6
    with pytest.raises(InputError, match="could not download"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
        load_dataset("mnist", data_dir=tmp_path / "debian" / "..", progress=False)
    with pytest.raises(InputError, match="not a folder"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")


def test_a_named_dataset_s_local_copy_must_be_its_published_files(tmp_path, monkeypatch):
    """--data-dir holding Fashion-MNIST's files given as mnist, and a damaged copy: one line naming what was
    found. The published digests are those of files made here (MNIST is not needed)."""
    monkeypatch.setenv(download.MIRRORS_VARIABLE, "http://127.0.0.1:9/")
    make_idx_folder(tmp_path / "digits-like", n_train=6)
    make_idx_folder(tmp_path / "clothes-like", n_train=9)
    monkeypatch.setitem(download.CONTENT_MD5, "mnist", content_md5(tmp_path / "digits-like"))
    monkeypatch.setitem(download.CONTENT_MD5, "fashion-mnist", content_md5(tmp_path / "clothes-like"))
    assert len(load_dataset("mnist", data_dir=tmp_path / "digits-like").x_train) == 6
    with pytest.raises(InputError, match=r"is Fashion-MNIST's train-images-idx3-ubyte, not MNIST's") as caught:
        load_dataset("mnist", data_dir=tmp_path / "clothes-like")
    assert "--dataset fashion-mnist" in str(caught.value) and "\n" not in str(caught.value)
    (tmp_path / "digits-like" / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(tmp_path / "digits-like" / "t10k-labels-idx1-ubyte", np.arange(5) % 3, compress=False)
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte is not MNIST's t10k-labels-idx1-ubyte \(MD5 "):
        load_dataset("mnist", data_dir=tmp_path / "digits-like")
    assert len(load_dataset(str(tmp_path / "digits-like")).x_test) == 5  # as a folder, the copy is what it is
