"""What a command does before its work: JAX's imports, which `--help` and usage errors answer without, and
a named dataset read beside them."""

from concurrent.futures import ThreadPoolExecutor


def start_jax() -> None:
    """Import JAX, keeping compiled programs on disk, with two malloc arenas that reuse freed memory: what every
    command does once its options are checked (so that `--help` and usage errors answer without JAX's second of
    imports)."""
    from jaxvae.process import enable_compilation_cache, limit_malloc_arenas, reuse_freed_memory

    limit_malloc_arenas()
    reuse_freed_memory()
    enable_compilation_cache()


def import_training() -> None:
    """`start_jax` and the modules `train` uses."""
    start_jax()
    from jaxvae import parallel, sweep, train  # noqa: F401


def read_while_importing(dataset: str, read):
    """`read()`'s data, with `import_training` done too.

    MNIST and Fashion-MNIST are read while JAX is imported on a thread of its own: JAX's imports (0.6 s)
    hold the interpreter, reading and gunzipping IDX files mostly does not, and imports nothing. Other
    data may import modules of their own (an image folder imports Pillow), and two threads importing
    one package can each find the other's half-imported, so they are read before JAX's imports: data that
    cannot be used are refused without them.
    """
    from jaxvae.data import NAMED_IDX

    if dataset not in NAMED_IDX:
        data = read()
        import_training()
        return data
    with ThreadPoolExecutor(1) as pool:
        importing = pool.submit(import_training)
        data = read()
        importing.result()
    return data
