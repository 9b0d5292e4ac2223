"""The table `jaxvae train` prints at the end of a sweep."""

from pathlib import Path

from jaxvae.runs import read_metrics
from jaxvae.sweep_statistics import groups, mean_and_sd

ERROR = "test_classification_error"  # a semi-supervised (M2) member's record, beside its test U(x)


def summary(out: Path, ended: dict[str, str]) -> str:
    """Each member's last epoch and test ELBO (U(x) and the test classification error for M2's members;
    `ended`: name -> how it ended, `sweep.fit_sweep`'s), and for seeds, their mean +- standard deviation per
    setting."""
    final = {name: records[-1] for name in ended if (records := read_metrics(out / name))}
    m2 = any(ERROR in record for record in final.values())
    columns = [("test_elbo", "test U(x), nats" if m2 else "test ELBO, nats", 1)]
    columns += [(ERROR, "test error, %", 100)] if m2 else []
    lines = [f"{'member':<24} {'epochs':>6} " + " ".join(f"{title:>16}" for _, title, _ in columns) + "  status"]
    for name, how in ended.items():
        values = [f"{final[name][key] * scale:16.2f}" if name in final else f"{'-':>16}" for key, _, scale in columns]
        lines.append(f"{name:<24} {len(read_metrics(out / name)):>6} {' '.join(values)}  {how}")
    for label, names in groups(list(ended)).items():
        done = [final[n] for n in names if n in final]
        if len(names) > 1 and done:
            cells, spreads = [], []
            for key, _, scale in columns:
                mean, sd = mean_and_sd([record[key] * scale for record in done])
                cells.append(f"{mean:16.2f}")
                spreads.append("sd undefined" if sd is None else f"+- {sd:.2f}")  # one seed left (the others diverged)
            lines.append(
                f"{label + ': mean +- sd':<24} {'':>6} {' '.join(cells)}  {', '.join(spreads)} over {len(done)} seeds"
            )
    return "\n".join(lines)
