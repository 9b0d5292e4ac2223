"""The epoch loop that a run and a sweep share: a run is a sweep of one member.

Each round, a `Trainer` trains every active member one epoch; the loop evaluates them on the test and
validation sets, and writes each member's epoch into its run folder (metrics line, TensorBoard, then
checkpoints: `runs.write_epoch`). A member stops on its own: when it has trained its epochs, when early
stopping ends it, or when it diverges (a non-finite loss or test ELBO), which `diverged` reports (a run
raises, a sweep freezes the member and goes on). A first Ctrl-C finishes the round, saves it and raises
KeyboardInterrupt.

The trainers: a single run's (`train.RunTrainer`: several devices and processes, data streamed from the
host), a sweep's two schedules (`sweep.StepMajor`, `sweep.MemberMajor`), and M2's, a run with labels
(`train.M2RunTrainer`) and its sweep (`train.M2Members`).
"""

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import equinox as eqx
import jax
import numpy as np
from jax import Array
from tqdm.auto import tqdm

from jaxvae import board, plots, runs
from jaxvae.builder import build_binarization, build_objective
from jaxvae.config import RunConfig, TrainConfig
from jaxvae.data import Dataset, split_validation
from jaxvae.distributions import kl_estimator
from jaxvae.evaluate import mean_bounds
from jaxvae.keys import DataSeed, Run, run_key
from jaxvae.model import LatentModel, split_condition
from jaxvae.objectives import kl_weight
from jaxvae.semisupervised import SemiSupervisedVAE

if TYPE_CHECKING:  # a trainer's states are train's, which imports this module
    from jaxvae.train import TrainState


@dataclasses.dataclass
class Member:
    """One run folder in training: its name, config and folder, the epochs it has done and its best
    validation bound so far with that epoch (`runs.best_validation`)."""

    name: str
    config: RunConfig
    run_dir: Path
    done: int
    best: tuple[float, int]

    @classmethod
    def resumed(cls, name: str, config: RunConfig, run_dir: Path, done: int) -> "Member":
        """The member at `done` epochs, its best validation bound read from its metrics."""
        best = runs.best_validation(runs.read_metrics(run_dir), build_objective(config.train).bound_key)
        return cls(name, config, run_dir, done, best)


Plan = list[tuple[int, float] | None]  # per member: (its next epoch, the KL weight of that epoch), or None: frozen


class Trainer(Protocol):
    """What trains and evaluates the members (indexed as the loop's list of them)."""

    examples: int  # training examples of one member's epoch

    def epoch(self, plan: Plan) -> list[tuple[dict[str, float], bool] | None]:
        """Train each planned member one epoch; per member (its training bounds' means, whether its losses
        and parameters stayed finite), None for a frozen one. Returns once the epoch is done."""
        ...

    def evaluate(self, x: Array, keys: list[Array], active: list[bool]) -> list[dict[str, float] | None]:
        """The ELBO's means over x (n, d) of each active member (`evaluate.mean_elbo` with its key); M2's
        (`semisupervised.held_out_scores`) of U(x) and its terms, and the `classification_error`."""
        ...

    def model(self, i: int) -> LatentModel | SemiSupervisedVAE:
        """Member i's model now: a VAE, or M2's parts."""
        ...

    def state(self, i: int, epoch: int) -> "TrainState":
        """Member i's `train.TrainState` at `epoch`, on this process's first device, for its checkpoint."""
        ...


def training_examples(data: Dataset, config: TrainConfig) -> np.ndarray:
    """The training array (n, d) after static binarization with the run's seed; dynamic binarization happens
    in the step."""
    return build_binarization(config).training(data.x_train, config.seed)


def test_examples(data: Dataset, config: TrainConfig) -> np.ndarray:
    """The test array (n, d), binarized once with its fixed seed (the same in every run)."""
    return build_binarization(config).held_out(data.x_test, DataSeed.TEST_BINARIZATION)


def held_out(data: Dataset, config: TrainConfig) -> tuple[Dataset, Array, Array]:
    """(the data without the validation examples, x_test, x_valid): the test and validation sets binarized
    with their fixed seeds, on this process's first device. Where the binarization draws each training input
    from its standard deviation (`with_std`: M1+M2's `--binarize redraw`), the training rows become [x, x_std, c]
    (n, 2 d + m), x_std_train split with x, and the held-out rows stay [x, c] (n, d + m): the means."""
    data, x_valid = split_validation(data, config.validation_fraction)
    binarization = build_binarization(config)
    x_valid = binarization.held_out(x_valid, DataSeed.VALIDATION_BINARIZATION)
    local = jax.local_devices()[0]
    x_test = jax.device_put(test_examples(data, config), local)
    if binarization.with_std and data.x_std_train is not None:
        d = data.x_std_train.shape[1]
        rows = np.concatenate([data.x_train[:, :d], data.x_std_train, data.x_train[:, d:]], axis=1)
        data = dataclasses.replace(data, x_train=rows, shape=(rows.shape[1],))
    return data, x_test, jax.device_put(x_valid, local)


def kl_estimator_of(model: LatentModel | SemiSupervisedVAE, rows: Array) -> str:
    """How the ELBO of `model` (of M2, its conditional VAE's) computes its KL for data like rows (n, d) (a
    conditional model's [x, c]): 'closed form' or 'monte carlo'."""
    vae = model.vae if isinstance(model, SemiSupervisedVAE) else model

    def pair(v, rows):
        x, c = split_condition(v, rows)
        return v.encode(x, c), v.prior(c)

    return kl_estimator(*eqx.filter_eval_shape(pair, vae, rows[:1])).name


@contextlib.contextmanager
def stop_after_epoch_on_interrupt():
    """While training, a first Ctrl-C (SIGINT) or SIGTERM only sets `stop[0]`: the epoch finishes and its
    checkpoint is written before training stops; a second one interrupts at once. The handler is
    installed whatever the inherited disposition (a background job starts with SIGINT ignored)."""
    stop = [False]
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop[0]:
            raise KeyboardInterrupt
        stop[0] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def train(
    members: list[Member],
    trainer: Trainer,
    x_test: Array,
    x_valid: Array,
    diverged: Callable[[Member, int], None],
    *,
    progress: bool = True,
    write: bool = True,
) -> dict[str, str]:
    """Train the members to their epochs; returns name -> how each ended ("finished", "stopped early at
    epoch E", "diverged in epoch E"). `diverged(member, epoch)` is called on a member's non-finite epoch
    (before anything of it is written) and may raise; `write`: whether this process writes the files."""
    configs = [m.config.train for m in members]
    test_keys = [run_key(t.seed, Run.TEST) for t in configs]
    valid_keys = [run_key(t.seed, Run.VALIDATION) for t in configs]
    kl = kl_estimator_of(trainer.model(0), x_test)
    ended: dict[str, str] = {}
    desc = "training" if len(members) == 1 else f"training {len(members)} members"
    total = configs[0].epochs - min(m.done for m in members)
    with contextlib.ExitStack() as contexts:
        stop = contexts.enter_context(stop_after_epoch_on_interrupt())
        events = [  # each member's TensorBoard writer, or None
            contexts.enter_context(board.writer(m.run_dir, m.done, write and m.config.train.tensorboard))
            for m in members
        ]
        bar = contexts.enter_context(tqdm(total=total, desc=desc, unit="epoch", disable=not (progress and write)))
        while True:
            for m in members:
                if m.name not in ended and (how := _how_ended(m)):
                    ended[m.name] = how
            active = [m.name not in ended for m in members]
            if not any(active):
                break
            plan = [
                (m.done + 1, kl_weight(t.beta, t.kl_warmup_epochs, m.done + 1)) if a else None
                for m, t, a in zip(members, configs, active, strict=True)
            ]
            if write:
                plots.import_in_background()  # while the epoch computes, for the figures at the end
            began = time.perf_counter()
            trained = trainer.epoch(plan)
            throughput = trainer.examples / (time.perf_counter() - began)
            tests = trainer.evaluate(x_test, test_keys, active)
            for i, (m, step, result, test) in enumerate(zip(members, plan, trained, tests, strict=True)):
                if step is not None and result is not None and test is not None:  # an active member's
                    if not (result[1] and math.isfinite(test["elbo"])):
                        diverged(m, step[0])
                        ended[m.name] = f"diverged in epoch {step[0]}"
                        active[i] = False
            valids = _validate(trainer, members, x_valid, valid_keys, active)
            seconds = time.perf_counter() - began
            for i, (m, step, result, test) in enumerate(zip(members, plan, trained, tests, strict=True)):
                if active[i] and step is not None and result is not None and test is not None:
                    (epoch, beta), valid = step, valids[i]
                    record = runs.epoch_record(epoch, result[0], test, beta, kl, seconds, throughput, valid)
                    if "classification_error" in test:  # M2's
                        record["test_classification_error"] = test["classification_error"]
                    _finish_epoch(m, record, trainer.state(i, epoch), events[i], write)
                    if len(members) == 1:
                        bar.set_postfix(train_elbo=f"{result[0]['elbo']:.2f}", test_elbo=f"{test['elbo']:.2f}")
            bar.update(1)
            if stop[0]:
                bar.close()  # now, so that the command's message comes after the bar, not glued to it
                raise KeyboardInterrupt(f"stopped after epoch {max(m.done for m in members)}")
    return {m.name: ended[m.name] for m in members}


def _validate(trainer: Trainer, members: list[Member], x: Array, keys: list[Array], active: list[bool]):
    """Each active member's validation bounds on x (n, d), nats: `elbo` (`Trainer.evaluate`), and where its
    objective trains another bound, that one too (`evaluate.mean_bounds`, its name as the objective reports
    it), and M2's `classification_error` (M2 validates U(x) alone); None for the others, and for every member
    without a validation set."""
    if not len(x):
        return [None] * len(members)
    elbos = trainer.evaluate(x, keys, active)
    bounds: list[dict[str, float] | None] = []
    for i, (m, v, a) in enumerate(zip(members, elbos, active, strict=True)):
        objective = build_objective(m.config.train)
        name = objective.bound_key
        if not a or v is None:
            bounds.append(None)
        elif name == "elbo" or isinstance(vae := trainer.model(i), SemiSupervisedVAE):
            bounds.append({k: v[k] for k in ("elbo", "classification_error") if k in v})
        else:
            xi, c = split_condition(vae, x)
            bounds.append({"elbo": v["elbo"], name: float(mean_bounds(vae, objective, xi, keys[i], c=c)[name])})
    return bounds


def _how_ended(member: Member) -> str | None:
    """Why `member` trains no further epoch ("finished", "stopped early at epoch E"), or None."""
    if member.done >= member.config.train.epochs:
        return "finished"
    if runs.stopped_early(member.config.train, member.done, member.best[1]):
        return f"stopped early at epoch {member.done}"
    return None


def _finish_epoch(member: Member, record: dict, state, events, write: bool) -> None:
    """Count the epoch of `record` as done, its best validation bound kept; with `write`, its TensorBoard
    scalars (to `events`, if any) and then its files (`runs.write_epoch` of `state`)."""
    valid = record.get(runs.validation_key(build_objective(member.config.train).bound_key))
    improved = False
    if valid is not None and valid > member.best[0]:
        member.best, improved = (valid, record["epoch"]), True
    if write and events is not None:  # before the checkpoint: a resumed run purges events from its first epoch on
        board.add_epoch(events, record)
    if write:
        runs.write_epoch(member.run_dir, record, state, member.config.train.keep_checkpoints, improved)
    member.done = record["epoch"]
