"""Downloads of the named datasets: known mirrors, SHA-256 checks, atomic writes into a cache folder.

Each file is fetched from the first mirror that serves it with the published checksum; a failed or
corrupt download leaves nothing behind. `JAXVAE_MIRRORS` (comma-separated base URLs) replaces the
mirror list, for offline copies and for tests.
"""

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from jaxvae.errors import InputError

MIRRORS_VARIABLE = "JAXVAE_MIRRORS"
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}
# The published SHA-256 of each gzipped IDX file (the same bytes on every mirror).
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
# The MD5 of each uncompressed IDX file, against which every local copy is checked: MNIST's as published
# with it, Fashion-MNIST's computed from Debian's dataset-fashion-mnist package.
CONTENT_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
TIMEOUT_SECONDS = 30
CHUNK_BYTES = 1 << 16


def cache_dir() -> Path:
    """Where downloads are kept: `$XDG_CACHE_HOME/jaxvae`, else `~/.cache/jaxvae`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxvae"


def mirrors(name: str) -> tuple[str, ...]:
    """The base URLs to try for dataset `name`, in order: `$JAXVAE_MIRRORS` if set, else the known ones."""
    override = os.environ.get(MIRRORS_VARIABLE, "").strip()
    if override:
        return tuple(url.strip() for url in override.split(",") if url.strip())
    return MIRRORS[name]


def fetch(
    name: str, folder: str | os.PathLike, *, checksums: dict[str, str] | None = None, progress: bool = True
) -> Path:
    """Make sure `folder` holds every file of dataset `name` with its checksum; returns `folder`.

    Files already in `folder` are kept; each missing one is downloaded from the first mirror that
    serves it intact. `checksums` (file name -> SHA-256) replaces the published table.
    """
    checksums = CHECKSUMS[name] if checksums is None else checksums
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for file, sha256 in checksums.items():
        if not (folder / file).is_file():
            _fetch_file(file, sha256, mirrors(name), folder, progress)
    return folder


def _fetch_file(file: str, sha256: str, bases: tuple[str, ...], folder: Path, progress: bool) -> None:
    failures = []
    for base in bases:
        url = base.rstrip("/") + "/" + file
        try:
            _download(url, folder / file, sha256, progress)
            return
        except (OSError, http.client.HTTPException, ValueError) as e:
            failures.append(f"{url}: {e}")
    raise InputError(
        f"could not download {file} ({'; '.join(failures) or 'no mirrors'}): "
        f"put the files in --data-dir or name a copy in {MIRRORS_VARIABLE}"
    )


def _download(url: str, path: Path, sha256: str, progress: bool) -> None:
    """Stream `url` into a temporary file beside `path`, check its SHA-256, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            size = response.headers.get("Content-Length")
            with tqdm(
                total=int(size) if size else None, unit="B", unit_scale=True, desc=path.name, disable=not progress
            ) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise ValueError(f"SHA-256 {digest.hexdigest()} is not the published {sha256}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
