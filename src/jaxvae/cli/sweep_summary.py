"""The table `jaxvae train` prints at the end of a sweep."""

from pathlib import Path

from jaxvae.runs import read_metrics
from jaxvae.sweep_statistics import groups, mean_and_sd


def summary(out: Path, ended: dict[str, str]) -> str:
    """Each member's last epoch and test ELBO (`ended`: name -> how it ended, `sweep.fit_sweep`'s), and for
    seeds, their mean +- standard deviation per setting."""
    lines = [f"{'member':<24} {'epochs':>6} {'test ELBO, nats':>16}  status"]
    final = {}
    for name, how in ended.items():
        records = read_metrics(out / name)
        if records:
            final[name] = records[-1]["test_elbo"]
        elbo = f"{final[name]:16.2f}" if name in final else f"{'-':>16}"
        lines.append(f"{name:<24} {len(records):>6} {elbo}  {how}")
    for label, names in groups(list(ended)).items():
        values = [final[n] for n in names if n in final]
        if len(names) > 1 and values:
            mean, sd = mean_and_sd(values)
            spread = "sd undefined" if sd is None else f"+- {sd:.2f}"  # one seed left (the others diverged)
            lines.append(f"{label + ': mean +- sd':<24} {'':>6} {mean:16.2f}  {spread} over {len(values)} seeds")
    return "\n".join(lines)
