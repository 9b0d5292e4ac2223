"""`jaxvae evaluate`'s reports as text: one run's table, and a sweep's mean +- sd per setting."""


def run_table(result: dict, run_dir, dataset: str, split: str) -> str:
    """The lines of one run's report (`jaxvae.evaluate.report`, with the gaps' keys when it has them)."""
    k = result["iw_samples"]
    rows = [
        ("ELBO", result["elbo"]),
        ("  reconstruction E_q[log p(x|z)]", result["reconstruction"]),
        ("  KL(q(z|x) || p(z))", result["kl"]),
        (f"log-likelihood, importance-weighted bound (K = {k})", result["log_likelihood"]),
    ]
    if result.get("log_likelihood_se") is not None:
        rows.append(("  its standard error over the examples", result["log_likelihood_se"]))
    if "log_likelihood_quadrature" in result:
        rows.append(("log-likelihood, quadrature on a grid", result["log_likelihood_quadrature"]))
    lines = [f"{run_dir}: {dataset}, {split} split, {result['n']} examples; means per example in nats"]
    if result.get("condition") == "label":
        lines.append("  given each example's label y: log p(x|y), q(z|x, y), p(x|z, y), p(z|y)")
    lines += [f"  {name:<52} {value:10.2f}" for name, value in rows]
    if "quadrature_change" in result:
        lines.append(_quadrature_check(result["quadrature_change"], result["quadrature_checked"]))
    for name, what in (("log_likelihood", "L_K"), ("log_likelihood_quadrature", "quadrature")):
        if f"{name}_per_class" in result:
            means = ", ".join("-" if v is None else f"{v:.2f}" for v in result[f"{name}_per_class"])
            lines.append(f"  {what} per class y = 0, 1, ...: {means}")
    if "gaps_log_px" in result:
        samples = result["gaps_elbo_samples"]
        lines.append(
            f"  inference gaps (Cremer et al. 2018); ELBO(q) and ELBO(q*) from the same {samples} draws, +- MC s.e."
        )
        gap_rows = [
            ("ELBO(q*), q* fitted to each example", "elbo_optimized"),
            ("amortization gap ELBO(q*) - ELBO(q)", "amortization_gap"),
            ("approximation gap log p(x) - ELBO(q*)", "approximation_gap"),
            ("log-likelihood, L_K with q* as the proposal", "log_likelihood_optimized"),
        ]
        for name, key in gap_rows:
            se = f" +- {result[key + '_se']:.3f}" if key + "_se" in result else ""
            lines.append(f"    {name:<50} {result[key]:10.2f}{se}")
        lines.append(f"    log p(x) of the gaps: {result['gaps_log_px']}; figure: {result['gaps_figure']}")
    k_dims = len(result["kl_per_dim"])
    lines.append(f"  {'bits per dimension, -L_K / (d ln 2)':<52} {result['bits_per_dim']:10.4f}")
    lines.append(
        f"  {'active units, Var_x E[z|x] > 0.01':<52} {str(result['active_units']) + ' of ' + str(k_dims):>10}"
    )
    if len(result["kl_per_layer"]) > 1:
        units = ", ".join(map(str, result["active_units_per_layer"]))
        lines.append(
            f"  {'KL per latent layer, bottom first':<52} {', '.join(f'{v:.2f}' for v in result['kl_per_layer']):>10}"
        )
        lines.append(f"  {'active units per latent layer':<52} {units:>10}")
        return "\n".join(lines)
    per_dim = result["kl_per_dim"]
    per_dim = "n/a for a flow" if None in per_dim else ", ".join(f"{v:.2f}" for v in per_dim)
    lines.append(f"  {'KL per latent dimension':<52} {per_dim:>10}")
    if "gradient_snr" in result:
        lines += snr_lines(result)
    return "\n".join(lines)


def snr_lines(result: dict) -> list[str]:
    """The table of `gradient_snr`: SNR |E[g]| / std(g) of IWAE's gradient by estimator and K, +- MC s.e."""
    lines = [
        f"  gradient signal-to-noise ratio of IWAE (Rainforth et al. 2018), {result['gradient_snr_repetitions']} "
        f"draws on a batch of {result['gradient_snr_batch']}; mean and median over components, +- MC s.e.",
        f"    {'estimator':<10} {'K':>6} {'encoder mean':>16} {'encoder median':>16} {'decoder mean':>16} "
        f"{'decoder median':>16}",
    ]
    for name, by_k in result["gradient_snr"].items():
        for k, s in by_k.items():
            cells = [
                f"{s[side + stat]:.3g} +- {s[side + stat + '_se']:.2g}"
                for side in ("encoder", "decoder")
                for stat in ("", "_median")
            ]
            lines.append(f"    {name:<10} {k:>6} " + " ".join(f"{c:>16}" for c in cells))
    lines.append(f"    figure: {result['gradient_snr_figure']}")
    return lines


def _quadrature_check(change: float, checked: int, indent: str = "  ", of: str = "") -> str:
    """The line under the quadrature: how far grids twice as fine moved it (the largest change over the
    first `checked` examples, `of` whom), and whether that is converged."""
    title = f"  largest change on grids twice as fine (first {checked}{of})"
    verdict = "" if change < CONVERGED else f"  not converged (over {CONVERGED} nats)"
    return f"{indent}{title:<52} {change:10.3f}{verdict}"


CONVERGED = 0.01  # nats: a quadrature that grids twice as fine move by less is called converged


def sweep_table(results: dict, groups: dict, sweep_dir, dataset: str, split: str) -> str:
    """The lines of a sweep's report: `results` by member, `groups` from `jaxvae.sweep_statistics.summarize`."""
    first = next(iter(results.values()))
    rows = [  # title, key, decimals
        ("M2: classification error of argmax q(y|x)", "classification_error", 4),
        ("M2: U(x), the unlabelled bound", "unlabelled_bound", 2),
        ("ELBO", "elbo", 2),
        ("  reconstruction E_q[log p(x|z)]", "reconstruction", 2),
        ("  KL(q(z|x) || p(z))", "kl", 2),
        (f"log-likelihood, importance-weighted bound (K = {first['iw_samples']})", "log_likelihood", 2),
        ("log-likelihood, quadrature on a grid", "log_likelihood_quadrature", 2),
        ("bits per dimension, -L_K / (d ln 2)", "bits_per_dim", 4),
        ("active units, Var_x E[z|x] > 0.01", "active_units", 1),
    ]
    lines = [
        f"{sweep_dir}: {len(results)} members, {dataset}, {split} split, {first['n']} examples; "
        "means per example in nats, mean +- sd (n - 1) over each setting's members"
    ]
    for label, group in groups.items():
        members = group["members"]
        lines.append(f"  {label}" if members == [label] else f"  {label} ({', '.join(members)})")
        for title, key, decimals in rows:
            if key in group["mean"]:
                sd = group["sd"][key]
                spread = " (one member)" if sd is None else f" +- {sd:.{decimals}f}"
                lines.append(f"    {title:<52} {group['mean'][key]:10.{decimals}f}{spread}")
        if "kl_per_dim" in group["mean"]:
            lines.append(f"    {'KL per latent dimension':<52} {_per_dimension(group):>10}")
    changes = [r["quadrature_change"] for r in results.values() if "quadrature_change" in r]
    if changes:
        lines.append(_quadrature_check(max(changes), first["quadrature_checked"], "", ", any member"))
    return "\n".join(lines)


def _per_dimension(group: dict) -> str:
    """A group's KL per latent dimension: 'mean +- sd, ...' ('mean, ...' for one member; n/a for a flow)."""
    means, sds = group["mean"]["kl_per_dim"], group["sd"]["kl_per_dim"]
    if None in means:
        return "n/a for a flow"
    return ", ".join(f"{m:.2f}" if s is None else f"{m:.2f} +- {s:.2f}" for m, s in zip(means, sds, strict=True))
