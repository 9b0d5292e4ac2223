"""Where training runs: the data-parallel mesh, several processes, the device memory budget.

Data parallel: one mesh axis `data` over every device of every process; parameters and Adam's moments
are replicated, each batch is split along its examples, and XLA sums the gradients across devices.
Random numbers do not depend on the sharding, so a run on D devices computes the same batches with the
same noise as on one device, and differs only in the order of float sums.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvae.errors import InputError

DATA_AXIS = "data"


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None):
    """Join a multi-process run through `jax.distributed.initialize`; without arguments, stay one process.

    `coordinator` is HOST:PORT of process 0. Give all three, or (on a cluster JAX recognises, e.g.
    SLURM) call `jax.distributed.initialize()` yourself and let JAX detect them.
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given):
        return
    if coordinator is None or num_processes is None or process_id is None:
        raise InputError("--coordinator, --num-processes and --process-id go together: give all three")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise InputError(f"--process-id must be in 0..{num_processes - 1}, got {process_id}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def data_mesh() -> Mesh:
    """A one-axis mesh over all devices of all processes."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that puts a whole copy of an array on every device of `mesh`."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Split axis `axis` (the examples of a batch) across the mesh."""
    return NamedSharding(mesh, P(*([None] * axis), DATA_AXIS))


def replicate(tree, mesh: Mesh):
    """Copy a tree of arrays (the same values in every process) onto every device of the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda a: jax.make_array_from_callback(a.shape, sharding, lambda i: np.asarray(a)[i]), tree)


def shard_batch(x, mesh: Mesh | None, axis: int = 0):
    """Inside a compiled function: ask XLA to split `x` along `axis` over the mesh (a no-op without one)."""
    return x if mesh is None else jax.lax.with_sharding_constraint(x, batch_sharding(mesh, axis))


def check_batch_size(batch_size: int) -> None:
    """Each batch is split evenly across all devices of all processes."""
    devices = jax.device_count()
    if batch_size % devices:
        raise InputError(f"--batch-size {batch_size} must be a multiple of the {devices} devices that share each batch")


def describe(mesh: Mesh) -> dict:
    """What config.json records about the hardware a run used."""
    device = mesh.devices.flat[0]
    return {
        "devices": int(mesh.devices.size),
        "processes": jax.process_count(),
        "platform": device.platform,
        "device_kind": device.device_kind,
    }


def is_writer() -> bool:
    """Only process 0 writes files."""
    return jax.process_index() == 0


def local_copy(tree):
    """A replicated tree as arrays on this process's first device (for evaluation and checkpoints)."""
    return jax.tree.map(lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a, tree)


def uncommitted(tree):
    """The tree's arrays copied to uncommitted arrays on the default device, as `build_model` and `load` make
    them: jitted functions key their compiled code on whether an argument is committed to a device, so a
    function already compiled for a built model then runs on the trained one without compiling again."""
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)) if isinstance(a, jax.Array) else a, tree)


def device_budget() -> int:
    """Bytes of training data to keep on each device: half of its memory (of the host's RAM on CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    total = stats.get("bytes_limit") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total) // 2
