"""The memory a setting needs, against the memory the machine has: checked before anything is allocated or
written, so that a size that cannot fit is one line (an InputError naming the setting) and not a crash.

Each need is a lower bound, made of arrays that must exist at once, in bytes of float32: a training step holds
the model's parameters, their gradients and Adam's two moments (`train_state_bytes`), and for each draw of z
the widest array that draw passes through (`values_per_draw`): a dense hidden layer's output, or the
likelihood's parameters. What a bound leaves out (the other layers, XLA's temporaries) only adds to it, so a
setting refused cannot fit, while one accepted may still not.
"""

import functools
import math
import os
from pathlib import Path

import jax
import numpy as np

from jaxvae.config import ModelConfig, RunConfig
from jaxvae.errors import InputError, SettingError

FLOAT_BYTES = 4
INDEX_LIMIT = np.iinfo(np.int32).max  # JAX counts with 32-bit integers


def available() -> int:
    """Bytes free for new arrays on this process's first device: on an accelerator its limit less what it holds
    (`memory_stats`); on a CPU the host's MemAvailable (/proc/meminfo), else its free pages (`os.sysconf`)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "MemAvailable":
                return int(value.split()[0]) * 1024  # in kB
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def parameter_bytes(config: RunConfig) -> int:
    """Bytes of the model's float arrays, what its gradient also takes: found by tracing (`train.state_shapes`)."""
    return _bytes(_state_shapes(config).vae, floats_only=True)


def train_state_bytes(config: RunConfig) -> int:
    """Bytes of a training state: the parameters, Adam's two moments and its counters, found by tracing."""
    return _bytes(_state_shapes(config))


@functools.lru_cache(maxsize=4)
def _state_shapes(config: RunConfig):
    """`train.state_shapes(config)`, traced once for the estimates of one config."""
    from jaxvae.train import state_shapes

    return state_shapes(config)


def values_per_draw(model: ModelConfig) -> int:
    """Floats of the widest array one draw of z passes through: the likelihood's parameters (one per data
    value), or a dense (mlp, gated) hidden layer's output; a conv layer's is counted as the data's."""
    from jaxvae.builder import dense_widths

    return max([math.prod(model.data_shape), *dense_widths(model)])


def draws_bytes(model: ModelConfig, draws: int) -> int:
    """Bytes of `draws` draws' widest arrays (`values_per_draw`), held at once."""
    return draws * values_per_draw(model) * FLOAT_BYTES


def check_training(config: RunConfig, members: int = 1, examples: int | None = None, have: int | None = None) -> None:
    """Raise SettingError where training `members` models of `config` together cannot fit in `have` bytes
    (default `available()`): their states and one gradient, then a step's batch_size (at most the `examples`
    of the training set) * samples (* groups) draws, split across the devices that share a batch."""
    have = available() if have is None else have
    model, train = config.model, config.train
    parameters, each_state = parameter_bytes(config), train_state_bytes(config)
    state = members * each_state + parameters
    of = f"{members} members' models" if members > 1 else "model"
    if state > have and each_state + parameters <= have:
        raise SettingError(
            f"{members:,} members (seeds x sweep) need {_size(state)} to train (parameters, gradients and Adam's "
            f"two moments), more than the {_size(have)} of memory available: at most "
            f"{(have - parameters) // each_state:,} fit",
            "seeds",
            "sweep",
        )
    if state > have:
        sizes = {"hidden": _values(model.hidden), "latent_dim": _values(model.layers or model.latent_dim)}
        sizes |= {
            name: getattr(model, name)
            for name, usual in (("posterior", "diagonal"), ("prior", "normal"))
            if getattr(model, name) != usual
        }
        *first, last = (f"{name} {value}" for name, value in sizes.items())
        named = f"{', '.join(first)} and {last}"
        raise SettingError(
            f"the model of {named} ({parameters // FLOAT_BYTES:,} parameters) needs {_size(each_state + parameters)}"
            f" to train (parameters, gradients and Adam's two moments), more than the {_size(have)} of memory "
            "available",
            *sizes,
        )
    batch = train.batch_size if examples is None else min(train.batch_size, examples)
    draws = batch * train.samples * train.groups // jax.device_count()
    if state + draws_bytes(model, draws) > have:
        groups = f" x groups {train.groups}" if train.groups > 1 else ""
        raise SettingError(
            f"batch_size {batch} x samples {train.samples}{groups} draws of z, {values_per_draw(model):,} "
            f"floats each, need {_size(state + draws_bytes(model, draws))} at each step (with the {of} to train), "
            f"more than the {_size(have)} of memory available",
            "batch_size",
            "samples",
            *(("groups",) if train.groups > 1 else ()),
        )


def check_image_size(config: RunConfig, have: int | None = None) -> None:
    """Raise SettingError where images resized to `config.train.image_size` cannot be trained on, before any is:
    `check_training` of a model of their size on one example, the message naming the size first."""
    size = config.train.image_size
    if size is None:
        return
    try:
        check_training(config, examples=1, have=have)
    except SettingError as e:
        h, w = size
        raise SettingError(f"image_size {h},{w} (images of {h * w:,} pixels): {e}", "image_size", *e.settings) from None


def check_draws(option: str, value: int | str, draws: int, model: ModelConfig, have: int | None = None) -> None:
    """Raise InputError where the `draws` draws of z at once that `value` of the command-line `option` asks for
    cannot fit in `have` bytes (default `available()`)."""
    have = available() if have is None else have
    need = draws_bytes(model, draws)
    if need > have:
        raise InputError(
            f"{option} {value} asks for {draws:,} draws of z at once, {values_per_draw(model):,} floats each: "
            f"{_size(need)}, more than the {_size(have)} of memory available"
        )


def check_importance_samples(option: str, samples: int, chunk: int, have: int | None = None) -> None:
    """Raise InputError where L_K with K = `samples` (the command-line `option`), drawn `chunk` at a time
    (`evaluate.log_likelihood`), cannot be computed: its draws are counted with 32-bit integers, and marked
    valid in a mask of K booleans beside their K indices."""
    limit = INDEX_LIMIT // min(chunk, samples) * min(chunk, samples)
    if samples > limit:
        raise InputError(f"{option} {samples} is more draws than L_K counts (32-bit integers): at most {limit}")
    have = available() if have is None else have
    need = samples * (1 + np.dtype(np.int32).itemsize)
    if need > have:
        raise InputError(
            f"{option} {samples} needs {_size(need)} to index its draws, more than the {_size(have)} of memory "
            "available"
        )


def _bytes(tree, floats_only: bool = False) -> int:
    """Bytes of the arrays (or their shapes) among the leaves of `tree`; a user's model also has functions."""
    arrays = [a for a in jax.tree.leaves(tree) if isinstance(a, jax.ShapeDtypeStruct | jax.Array | np.ndarray)]
    return sum(a.size * a.dtype.itemsize for a in arrays if not floats_only or np.issubdtype(a.dtype, np.floating))


def _values(sizes) -> str:
    return ",".join(map(str, sizes)) if isinstance(sizes, tuple) else str(sizes)


def _size(n: int) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1: 3.2 GiB."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(max(0, int(math.log(max(n, 1), 1024))), len(units) - 1)
    return f"{n:,} bytes" if power == 0 else f"{n / 1024**power:.1f} {units[power]}"
