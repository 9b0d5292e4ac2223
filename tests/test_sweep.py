"""Sweeps: each member is the run `jaxvae train` with its seed and setting alone would give, in both schedules
(step-major and member-major); resume is exact; a diverging member stops alone; early stopping is per member;
evaluate reports every member."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import checkpoint
from jaxvae.cli import main
from jaxvae.config import ModelConfig, RunConfig, TrainConfig
from jaxvae.data import load_dataset
from jaxvae.evaluate import mean_elbo
from jaxvae.runs import read_metrics
from jaxvae.sweep import MemberMajor, StepMajor, fit_sweep, member_configs
from jaxvae.train import fit, init_state, state_shapes

TIMING = ("seconds", "examples_per_second")


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """Figures are tested elsewhere; here they would only cost time."""
    monkeypatch.setattr("jaxvae.plots.write_figures", lambda *args: None)


@pytest.fixture(params=[StepMajor, MemberMajor], ids=["step-major", "member-major"])
def schedule(request, monkeypatch):
    """Each schedule in turn, as the one `sweep.schedule` chooses."""
    monkeypatch.setattr("jaxvae.sweep.schedule", lambda configs: request.param)
    return request.param


def cli(capsys, *args):
    """Run the command line in this process: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def small_config(**train):
    return RunConfig(ModelConfig(data_shape=(8, 8), hidden=(16,)), TrainConfig(**{"epochs": 2, **train}))


def without_timing(metrics):
    return [{k: v for k, v in m.items() if k not in TIMING} for m in metrics]


@pytest.mark.slow
def test_members_are_the_separate_runs(tmp_path):
    """4 members (2 seeds, each its own data order, x 2 free-bits values; beta 0.5 and lr 3e-3, traced like
    them): the last, which differs from the first in seed and setting, against its separate run (`train.fit`).
    Metrics within 1e-3 nats, parameters within 1e-4 (float sums in another order), the same KL weights."""
    data = load_dataset("digits")
    configs = member_configs(small_config(binarize="dynamic", beta=0.5, lr=3e-3), 2, ("free-bits", (0.0, 0.4)))
    fit_sweep(configs, data, tmp_path / "sweep", progress=False)
    assert [m["name"] for m in json.loads((tmp_path / "sweep" / "sweep.json").read_text())["members"]] == list(configs)
    name = "free-bits-0.4-seed-1"
    config = configs[name]
    fit(config, data, tmp_path / name, progress=False)
    alone, member = read_metrics(tmp_path / name), read_metrics(tmp_path / "sweep" / name)
    assert [m["epoch"] for m in member] == [1, 2] and [m["beta"] for m in member] == [m["beta"] for m in alone]
    for key in ("train_elbo", "test_elbo", "test_kl"):
        np.testing.assert_allclose([m[key] for m in member], [m[key] for m in alone], atol=1e-3)
    a, b = (
        checkpoint.restore(run / "checkpoints" / "epoch-00002.eqx", state_shapes(config))
        for run in (tmp_path / name, tmp_path / "sweep" / name)
    )
    for x, y in zip(*(jax.tree.leaves(eqx.filter(s, eqx.is_array)) for s in (a, b)), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)
    assert RunConfig.load(tmp_path / "sweep" / name / "config.json").train == config.train
    # the settings really differ between members: distinct numbers
    assert len({read_metrics(tmp_path / "sweep" / name)[-1]["train_elbo"] for name in configs}) == len(configs)


@pytest.mark.slow
def test_member_major_and_step_major_train_the_same_members_and_member_major_is_the_separate_run(tmp_path):
    """2 seeds (static binarization: each member its own training data; beta 0.5, lr 3e-3, validation): the two
    schedules' metrics within 1e-3 nats and parameters within 1e-4 (float sums in another order); member-major's
    member seed-1 against its separate run (`train.fit`) within 1e-5 nats, the same program but for its traced
    learning rate."""
    data = load_dataset("digits")
    base = small_config(binarize="static", beta=0.5, lr=3e-3, validation_fraction=0.2)
    configs = member_configs(base, 2, None)
    for trainer in (StepMajor, MemberMajor):
        fit_sweep(configs, data, tmp_path / trainer.__name__, progress=False, trainer=trainer)
    name = "seed-1"
    fit(configs[name], data, tmp_path / name, progress=False)
    keys = ("train_elbo", "test_elbo", "test_kl", "validation_elbo")
    for member in configs:
        step, each = (read_metrics(tmp_path / trainer.__name__ / member) for trainer in (StepMajor, MemberMajor))
        assert [m["epoch"] for m in step] == [m["epoch"] for m in each] == [1, 2]
        for key in keys:
            np.testing.assert_allclose([m[key] for m in each], [m[key] for m in step], atol=1e-3)
        a, b = (
            checkpoint.restore(tmp_path / t.__name__ / member / "checkpoints" / "epoch-00002.eqx", state_shapes(base))
            for t in (StepMajor, MemberMajor)
        )
        for x, y in zip(*(jax.tree.leaves(eqx.filter(s, eqx.is_array)) for s in (a, b)), strict=True):
            np.testing.assert_allclose(x, y, atol=1e-4)
    alone, member = read_metrics(tmp_path / name), read_metrics(tmp_path / "MemberMajor" / name)
    for key in keys:
        np.testing.assert_allclose([m[key] for m in member], [m[key] for m in alone], rtol=0, atol=1e-5)
    assert len({read_metrics(tmp_path / "MemberMajor" / n)[-1]["train_elbo"] for n in configs}) == len(configs)


def test_the_schedule_is_step_major_only_where_the_members_states_are_small_and_fit_the_cache(monkeypatch):
    """`sweep.schedule` on a CPU: step-major for several members while one member's state is at most twice the
    L2 cache and N states fit the last-level cache (at most 32 MiB of it); member-major otherwise."""
    from jaxvae.sweep import schedule, state_bytes

    config = small_config()
    each = state_bytes(config)  # parameters and Adam's two moments: 3 x 2,244 float32, and 2 int32 counts
    assert each == 3 * 2244 * 4 + 2 * 4
    for l2, last_level, members, chosen in [
        (each, 4 * each, 4, StepMajor),
        (each, 4 * each, 5, MemberMajor),  # the states overflow the last-level cache
        (each, 4 * each, 1, MemberMajor),  # nothing to share
        (each // 2 - 1, 4 * each, 2, MemberMajor),  # one state is more than twice the L2 cache
        (each, 2**40, 32 * 2**20 // each, StepMajor),  # a reported cache counts up to 32 MiB
        (each, 2**40, 32 * 2**20 // each + 1, MemberMajor),
    ]:
        monkeypatch.setattr("jaxvae.sweep_schedule.cpu_caches", lambda l2=l2, last_level=last_level: (l2, last_level))
        assert schedule(member_configs(config, members, None)) is chosen, (l2, last_level, members)


@pytest.mark.slow
def test_resume_after_a_kill_is_bit_identical(tmp_path, schedule, capsys):
    """3 epochs at once, against 2 epochs then --resume to 3 with member seed-1's epoch-2 checkpoint gone (a
    kill between two members' writes): the same metrics and byte-identical checkpoints, best.eqx included."""
    args = ["--hidden", "16", "--seeds", "2", "--validation-fraction", "0.2", "--quiet"]
    assert cli(capsys, "train", "--out", str(tmp_path / "a"), "--epochs", "3", *args)[0] == 0
    assert cli(capsys, "train", "--out", str(tmp_path / "b"), "--epochs", "2", *args)[0] == 0
    (tmp_path / "b" / "seed-1" / "checkpoints" / "epoch-00002.eqx").unlink()
    code, _, err = cli(capsys, "train", "--out", str(tmp_path / "b"), "--resume", "--epochs", "3", "--seeds", "3")
    assert code == 2 and "--seeds cannot change" in err
    code, out, _ = cli(capsys, "train", "--out", str(tmp_path / "b"), "--resume", "--epochs", "3", "--quiet")
    assert code == 0 and "seeds: mean +- sd" in out
    for name in ("seed-0", "seed-1"):
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        assert without_timing(read_metrics(a)) == without_timing(read_metrics(b))
        for file in ("epoch-00003.eqx", "best.eqx"):
            assert (a / "checkpoints" / file).read_bytes() == (b / "checkpoints" / file).read_bytes()


@pytest.mark.slow
def test_ctrl_c_finishes_the_epoch_saves_every_member_and_says_how_to_resume(tmp_path, schedule, capsys, monkeypatch):
    """A Ctrl-C during the first epoch (the flag train's SIGINT handler sets, set from the start here)."""
    import contextlib

    monkeypatch.setattr("jaxvae.loop.stop_after_epoch_on_interrupt", lambda: contextlib.nullcontext([True]))
    out = tmp_path / "sweep"
    code, _, err = cli(capsys, "train", "--out", str(out), "--hidden", "16", "--seeds", "2", "--quiet")
    assert code == 130 and f"continue with: jaxvae train --resume --out {out}" in err
    assert "every member of the sweep is saved (epoch 1)" in err and "seed-0/checkpoints" not in err, err
    for name in ("seed-0", "seed-1"):
        assert [m["epoch"] for m in read_metrics(out / name)] == [1]
        assert [p.name for p in (out / name / "checkpoints").iterdir()] == ["epoch-00001.eqx"]


def test_ctrl_c_message_comes_on_its_own_line_after_the_progress_bar(tmp_path, capsys, monkeypatch):
    """With the progress bar on: the bar is finished (a newline) before the message, the message is the last
    line, and nothing redraws the bar afterwards (once the bar is garbage)."""
    import contextlib
    import gc

    monkeypatch.setattr("jaxvae.loop.stop_after_epoch_on_interrupt", lambda: contextlib.nullcontext([True]))
    out = tmp_path / "sweep"
    code, _, err = cli(capsys, "train", "--out", str(out), "--hidden", "16", "--seeds", "2")
    gc.collect()
    assert code == 130 and capsys.readouterr().err == ""
    assert "training 2 members" in err and "\njaxvae: interrupted" in err
    assert err.endswith("\n") and err.splitlines()[-1].startswith("jaxvae: interrupted")


@pytest.mark.slow
def test_diverging_and_early_stopping_members_stop_alone_and_evaluate_reports_the_rest(tmp_path, schedule, capsys):
    """lr 1e9 diverges in epoch 1 and leaves no checkpoint; lr 1e-30 leaves the weights unchanged, so with
    patience 2 it stops after epoch 3 (validation ELBO never beats epoch 1's); lr 1e-3 trains all 5 epochs."""
    out = tmp_path / "sweep"
    args = ["--hidden", "16", "--epochs", "5", "--validation-fraction", "0.1", "--early-stopping", "2", "--quiet"]
    code, stdout, err = cli(capsys, "train", "--out", str(out), "--sweep", "lr=1e-30,1e-3,1e9", *args)
    assert code == 0, err
    assert "lr-1e+09: non-finite loss in epoch 1: it stopped" in err
    assert [len(read_metrics(out / name)) for name in ("lr-1e-30", "lr-0.001", "lr-1e+09")] == [3, 5, 0]
    assert "stopped early at epoch 3" in stdout and "diverged in epoch 1" in stdout
    assert (out / "training_curves.png").stat().st_size > 0
    # lr 1e-30 keeps the initial weights: its test ELBOs are the initial model's, computed directly
    config = RunConfig.load(out / "lr-1e-30" / "config.json")
    data = load_dataset("digits")
    initial = mean_elbo(init_state(config).vae, jnp.asarray(data.x_test), jax.random.fold_in(jax.random.PRNGKey(0), 2))
    for record in read_metrics(out / "lr-1e-30"):
        assert record["test_elbo"] == pytest.approx(float(initial["elbo"]), abs=1e-4)

    evaluate = ["--iw-samples", "10", "--n", "40", "--json"]
    code, stdout, err = cli(capsys, "evaluate", str(out), *evaluate)
    assert code == 0 and "lr-1e+09" in err
    result = json.loads(stdout)
    assert set(result["members"]) == {"lr-1e-30", "lr-0.001"}
    for name, member in result["members"].items():  # the reference: evaluate of the member's own folder
        alone = json.loads(cli(capsys, "evaluate", str(out / name), *evaluate)[1])
        assert (alone.pop("dataset"), alone.pop("split"), alone.pop("checkpoint")) == ("digits", "test", "latest")
        assert member == alone
        scalars = {k: v for k, v in alone.items() if not isinstance(v, list)}
        assert result["groups"][name] == {  # one member: its values, and no spread (null)
            "members": [name],
            "mean": scalars | {"kl_per_dim": alone["kl_per_dim"]},
            "sd": {k: None for k in scalars} | {"kl_per_dim": [None] * len(alone["kl_per_dim"])},
        }


def test_mean_and_sd_over_seeds(tmp_path):
    """Against numpy on made-up results: mean, and the standard deviation with n - 1."""
    from jaxvae.sweep_statistics import summarize

    results = {f"seed-{s}": {"elbo": e, "active_units": a} for s, e, a in ((0, -30.0, 2), (1, -31.0, 2), (2, -33.5, 1))}
    (group,) = summarize(results, {"seeds": list(results)}).values()
    assert group["mean"]["elbo"] == pytest.approx(-31.5) and group["mean"]["active_units"] == pytest.approx(5 / 3)
    assert group["sd"]["elbo"] == pytest.approx(np.std([-30, -31, -33.5], ddof=1))


def test_one_member_s_spread_is_undefined_and_kl_per_dimension_is_summarized():
    """The sd of one value is None, not 0; kl_per_dim gets a mean and sd per dimension (None for a flow's)."""
    from jaxvae.sweep_statistics import summarize

    results = {
        "beta-0.5": {"elbo": -30.0, "kl_per_dim": [1.0, 2.0]},
        "beta-1-seed-0": {"elbo": -31.0, "kl_per_dim": [1.0, 3.0]},
        "beta-1-seed-1": {"elbo": -32.0, "kl_per_dim": [2.0, 5.0]},
        "iaf": {"elbo": -29.0, "kl_per_dim": [None, None]},
    }
    groups = summarize(
        results, {"beta-0.5": ["beta-0.5"], "beta-1": ["beta-1-seed-0", "beta-1-seed-1"], "iaf": ["iaf"]}
    )
    assert groups["beta-0.5"]["sd"] == {"elbo": None, "kl_per_dim": [None, None]}
    assert groups["beta-0.5"]["mean"]["kl_per_dim"] == [1.0, 2.0]
    assert groups["beta-1"]["mean"]["kl_per_dim"] == [1.5, 4.0]
    assert groups["beta-1"]["sd"]["kl_per_dim"] == pytest.approx([np.std([1, 2], ddof=1), np.std([3, 5], ddof=1)])
    assert groups["iaf"]["mean"]["kl_per_dim"] == [None, None]


def test_members_may_differ_only_in_seed_and_the_swept_settings():
    import dataclasses

    from jaxvae.errors import InputError
    from jaxvae.sweep import check

    config = small_config()
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, hidden=(32,)))
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=3, seed=1))
    for other in (wider, longer):
        with pytest.raises(InputError, match="may differ only in their seed, beta, lr, free_bits and ciwae_beta"):
            check({"a": config, "b": other}, load_dataset("digits"))


@pytest.mark.slow
def test_bad_sweeps_exit_2_and_a_sweep_that_all_diverges_exits_1_without_a_folder(tmp_path, capsys):
    out = tmp_path / "sweep"
    base = ["train", "--out", str(out), "--hidden", "16", "--quiet"]
    code, _, err = cli(capsys, *base, "--seeds", "3", "--device-memory-budget", "300000")
    # digits: 1438 + 359 examples of 64 float32 values (460,032 bytes); each member twice its state: the
    # parameters and Adam's two moments, 3 x 2,244 float32 (64-16-4 encoder, 2-16-64 decoder), and 2 int32 counts
    assert code == 2 and "at most 0 members fit" in err and not out.exists()
    code, _, err = cli(capsys, *base, "--seeds", "40", "--device-memory-budget", "700000")
    each = 2 * (3 * 2244 * 4 + 2 * 4)
    assert code == 2 and f"at most {(700000 - 1797 * 64 * 4) // each} members fit" in err and not out.exists()
    assert cli(capsys, *base, "--sweep", "samples=1,2")[:1] == (2,) and not out.exists()
    assert cli(capsys, *base, "--sweep", "lr=0.1,x")[:1] == (2,) and not out.exists()
    code, _, err = cli(capsys, *base, "--sweep", "lr=0.1,-1")
    assert code == 2 and "--lr must be positive" in err and not out.exists()
    code, _, err = cli(capsys, *base, "--sweep", "beta=0.5,1,0.5000001")
    assert code == 2 and "--sweep beta lists a value twice" in err and not out.exists()
    code, _, err = cli(capsys, *base, "--sweep", "lr=1e9,1e10", "--epochs", "1")
    assert code == 1 and "every member diverged" in err and not out.exists()  # as a run diverging in epoch 1
    code, _, err = cli(capsys, *base, "--seeds", "0")
    assert code == 2 and "--seeds must be at least 1" in err and not out.exists()


@pytest.mark.slow
def test_a_ciwae_beta_sweep_member_is_its_separate_run(tmp_path):
    """CIWAE's beta is the objective's traced scalar: member ciwae-beta-0.8 against `train.fit` alone, within
    1e-3 nats (float sums in another order), and the two members differ."""
    data = load_dataset("digits")
    base = small_config(objective="ciwae", samples=3, gradient="dreg", epochs=1)
    configs = member_configs(base, 1, ("ciwae-beta", (0.2, 0.8)))
    fit_sweep(configs, data, tmp_path / "sweep", progress=False)
    fit(configs["ciwae-beta-0.8"], data, tmp_path / "alone", progress=False)
    (member,), (alone,) = read_metrics(tmp_path / "sweep" / "ciwae-beta-0.8"), read_metrics(tmp_path / "alone")
    for key in ("train_elbo", "train_ciwae_bound", "test_elbo"):
        np.testing.assert_allclose(member[key], alone[key], atol=1e-3)
    assert read_metrics(tmp_path / "sweep" / "ciwae-beta-0.2")[0]["train_elbo"] != member["train_elbo"]


def test_resume_with_nothing_left_to_train_writes_nothing(tmp_path):
    """Every member has its epochs: no file of the sweep written or touched, each member's reason returned;
    the sweep folder may be a str."""
    data, out = load_dataset("digits"), tmp_path / "sweep"
    configs = member_configs(small_config(epochs=1), 2, None)
    fit_sweep(configs, data, str(out), progress=False)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}
    ended = fit_sweep(configs, data, out, resume=True, progress=False)
    assert ended == {name: "already trained 1 of 1 epochs" for name in configs}
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_the_command_on_a_sweep_with_nothing_left_prints_one_line(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert cli(capsys, "train", "--out", str(out), "--hidden", "8", "--epochs", "1", "--seeds", "2", "--quiet")[0] == 0
    code, stdout, err = cli(capsys, "train", "--out", str(out), "--resume", "--epochs", "1")
    assert (code, stdout, err) == (0, f"{out}: every member already trained 1 of 1 epochs; nothing to do\n", "")


@pytest.mark.slow
def test_evaluate_a_sweep_of_one_member_per_setting(tmp_path, capsys):
    """One member per setting: no spread (null in JSON, "one member" in the table, not +- 0), the header
    does not repeat its name, and the KL per latent dimension is shown as for a single run."""
    out = tmp_path / "sweep"
    args = ["train", "--out", str(out), "--hidden", "8", "--epochs", "1", "--sweep", "beta=0.5,1", "--quiet"]
    assert cli(capsys, *args)[0] == 0
    code, stdout, err = cli(capsys, "evaluate", str(out), "--iw-samples", "5", "--n", "10", "--json")
    assert code == 0, err
    got = json.loads(stdout)
    assert got["groups"]["beta-0.5"]["sd"]["elbo"] is None and got["split"] == "test"
    assert len(got["groups"]["beta-0.5"]["mean"]["kl_per_dim"]) == 2
    code, stdout, err = cli(capsys, "evaluate", str(out), "--iw-samples", "5", "--n", "10")
    assert code == 0, err
    assert "+- 0.00" not in stdout and "(one member)" in stdout and "beta-0.5 (beta-0.5)" not in stdout
    assert "\n  beta-0.5\n" in stdout and stdout.count("KL per latent dimension") == 2, stdout


def test_plot_on_a_sweep_draws_every_member_and_the_sweep_s_curves(tmp_path, capsys, monkeypatch):
    monkeypatch.undo()  # the figures are what is under test
    out = tmp_path / "sweep"
    assert cli(capsys, "train", "--out", str(out), "--hidden", "8", "--epochs", "1", "--seeds", "2", "--quiet")[0] == 0
    for png in out.rglob("*.png"):
        png.unlink()
    code, stdout, err = cli(capsys, "plot", str(out))
    assert code == 0, err
    assert (out / "training_curves.png").is_file() and "not a jaxvae run folder" not in err
    for name in ("seed-0", "seed-1"):
        assert (out / name / "figures" / "latent_scatter.png").is_file() and str(out / name / "figures") in stdout


@pytest.mark.slow
def test_a_flow_posterior_sweep_member_is_its_separate_run(tmp_path, schedule):
    """`--posterior iaf:1 --seeds 2` (the flow's masks are arrays that are not parameters, and stay one
    member's): member seed-1 against its separate run, metrics within 1e-3 nats."""
    data = load_dataset("digits")
    base = RunConfig(ModelConfig(data_shape=(8, 8), hidden=(16,), posterior="iaf:1"), TrainConfig(epochs=1))
    configs = member_configs(base, 2, None)
    fit_sweep(configs, data, tmp_path / "sweep", progress=False)
    fit(configs["seed-1"], data, tmp_path / "alone", progress=False)
    member, alone = read_metrics(tmp_path / "sweep" / "seed-1"), read_metrics(tmp_path / "alone")
    for key in ("train_elbo", "test_elbo", "test_kl"):
        np.testing.assert_allclose([m[key] for m in member], [m[key] for m in alone], atol=1e-3)


@pytest.mark.slow
def test_a_conv_sweep_on_a_cpu_loops_on_the_host_and_its_members_are_the_separate_runs(tmp_path, caplog, monkeypatch):
    """`--architecture conv --sweep lr=1e-3,3e-3` on the CPU: `sweep.schedule` picks member-major, whose
    member epochs loop on the host over one compiled step (`looping.ON_HOST`), compiled once for both
    members and epochs (the learning rate traced); member lr-0.003 against its separate run within 1e-5 nats."""
    from jaxvae.sweep import schedule

    data = load_dataset("digits")
    base = RunConfig(
        ModelConfig((8, 8), latent_dim=2, hidden=(3, 4), architecture="conv"),
        TrainConfig(epochs=2, batch_size=64, binarize="dynamic"),
    )
    configs = member_configs(base, 1, ("lr", (1e-3, 3e-3)))
    with monkeypatch.context() as m:
        m.setattr("jaxvae.sweep_schedule.cpu_caches", lambda: (2**30, 2**30))  # caches where any states fit
        assert jax.default_backend() == "cpu" and schedule(configs) is MemberMajor
        assert schedule(member_configs(small_config(), 2, None)) is StepMajor
    with jax.log_compiles(), caplog.at_level("WARNING"):
        fit_sweep(configs, data, tmp_path / "sweep", progress=False)
    assert sum("Compiling jit(scan_step)" in r.getMessage() for r in caplog.records) == 1
    fit(configs["lr-0.003"], data, tmp_path / "alone", progress=False)
    member, alone = read_metrics(tmp_path / "sweep" / "lr-0.003"), read_metrics(tmp_path / "alone")
    assert [m["epoch"] for m in member] == [1, 2]
    for key in ("train_elbo", "test_elbo", "test_kl"):
        np.testing.assert_allclose([m[key] for m in member], [m[key] for m in alone], rtol=0, atol=1e-5)
    assert read_metrics(tmp_path / "sweep" / "lr-0.001")[-1]["train_elbo"] != member[-1]["train_elbo"]
