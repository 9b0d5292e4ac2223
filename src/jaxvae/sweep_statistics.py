"""A sweep's members' results summarized per setting: mean and standard deviation over the seeds."""

from collections.abc import Sequence

import numpy as np


def groups(names: list[str]) -> dict[str, list[str]]:
    """A sweep's member names (seed-3, beta-0.5-seed-1, ...) grouped by their setting (all but the seed): group
    label -> member names; members that differ only in their seed are the group "seeds"."""
    grouped: dict[str, list[str]] = {}
    for name in names:
        grouped.setdefault(name.rsplit("seed-", 1)[0].rstrip("-") or "seeds", []).append(name)
    return grouped


def mean_and_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1) of the members' values; the sd of one value is undefined:
    None."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def _mean_and_sd_per_dimension(rows: list[list]) -> tuple[list, list]:
    """mean_and_sd of each dimension of the members' per-dimension values (`kl_per_dim`); a dimension
    without a value (None, a flow's) has None for both."""
    stats = [mean_and_sd(column) if None not in column else (None, None) for column in zip(*rows, strict=True)]
    return [m for m, _ in stats], [s for _, s in stats]


def summarize(results: dict[str, dict], grouped: dict[str, list[str]]) -> dict[str, dict]:
    """Per group of members: their names and the mean and sd of every scalar figure of `results` (name ->
    `evaluate.report`) and of each dimension of `kl_per_dim`, over the members that have results; an sd
    over one member is None."""
    summaries = {}
    for label, names in grouped.items():
        names = [n for n in names if n in results]
        if names:
            keys = [k for k, v in results[names[0]].items() if isinstance(v, int | float)]
            stats: dict[str, tuple] = {k: mean_and_sd([results[n][k] for n in names]) for k in keys}
            if "kl_per_dim" in results[names[0]]:
                stats["kl_per_dim"] = _mean_and_sd_per_dimension([results[n]["kl_per_dim"] for n in names])
            summaries[label] = {
                "members": names,
                "mean": {k: m for k, (m, _) in stats.items()},
                "sd": {k: s for k, (_, s) in stats.items()},
            }
    return summaries
