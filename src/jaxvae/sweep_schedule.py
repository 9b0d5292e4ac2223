"""Which of a sweep's schedules trains its members faster on this machine: the rule, and the CPU caches it
reads.

Step-major (`sweep.StepMajor`) shares each step's fixed costs among the members; member-major
(`sweep.MemberMajor`) keeps one member's state in the cache for its whole epoch. Measured
(docs/performance.md, "Seeds and sweeps"): where a member's state is large, a step is long enough that
sharing its fixed costs gains nothing, and the stacked states only add memory traffic; where the states
overflow the cache, they stream from DRAM at every step.
"""

import contextlib
import os
from pathlib import Path

import jax


def steps_together(state_bytes: int, members: int) -> bool:
    """Whether `members` members whose training states have `state_bytes` bytes each train faster step by step
    together: always on an accelerator; on a CPU, where there are several members, one member's state is at
    most twice the per-core L2 cache, and all their states together fit the last-level cache, but at most
    32 MiB of it (a virtual machine reports its host's whole cache, which it shares)."""
    if jax.default_backend() != "cpu":
        return True
    l2, last_level = cpu_caches()
    return members > 1 and state_bytes <= 2 * l2 and members * state_bytes <= min(last_level, 32 * 2**20)


def cpu_caches() -> tuple[int, int]:
    """(the per-core L2 cache, the last-level cache) of this CPU in bytes: from sysfs, else `os.sysconf`, else
    1 MiB and 32 MiB."""
    found = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            if (index / "type").read_text().strip() != "Instruction":
                size = (index / "size").read_text().strip()
                level = int((index / "level").read_text())
                found[level] = int(size.rstrip("KMG")) * {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1], 1)
    for level, name in ((2, "SC_LEVEL2_CACHE_SIZE"), (3, "SC_LEVEL3_CACHE_SIZE")):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            found.setdefault(level, os.sysconf(name))
    found = {level: size for level, size in found.items() if size > 0}
    last_level = max(found, default=0)
    return found.get(2, 2**20), found[last_level] if last_level > 2 else 32 * 2**20
