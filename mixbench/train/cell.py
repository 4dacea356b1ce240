"""Train one cell — (mixer, optimizer, task, seed, ...) — under the standard protocol.

The protocol is the same for every cell, so that differences come from the mixer or the
optimizer and nothing else:

* the model is the MetaFormer shell around the mixer (``preset``, default ``tiny``), seeded
  with ``torch.manual_seed(seed)``; the batch order comes from its own seeded generator, so a
  cell is reproducible from its config alone (bit for bit on a CPU);
* one loop for every optimizer: ``optimizer.step(closure)``, where the closure zeroes the
  gradients, runs forward and backward and returns the loss. Counting closure calls counts
  gradient evaluations, so SAM's second pass is charged without a special case, and the
  logged training loss is the *first* call's, L(w), never SAM's L(w + e);
* linear warm-up then cosine decay of the learning rate (``schedule.py``);
* cross-entropy over every labelled position (``IGNORE_INDEX`` elsewhere), accuracy over the
  same positions: for per-token tasks such as MQAR that is exactly the query positions;
* a NaN or infinite loss stops the cell as ``diverged`` at that step; the grid goes on;
* three splits: every choice (best step, target, early stop, tuning) looks at validation;
  the test split is evaluated once, at the final weights, and reported beside it
  (``split_test``: a task without one gets the second half of its validation split).

``train_cell(config)`` returns the summary row (plain JSON data) and the curves; the command
writes them to the result store.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from mixbench.core.api import create_model, create_optimizer, create_task
from mixbench.core.plugin_loader import get_registry
from mixbench.errors import IncompatibleError, UsageError, is_out_of_memory
from mixbench.measure.sharpness import measure_model
from mixbench.runs.cells import Cell
from mixbench.runs.rows import plain, row_skeleton
from mixbench.tasks import IGNORE_INDEX, TaskData
from mixbench.train.schedule import make_scheduler, warmup_steps_for

# A plugin states its optimizer's peak learning rate with register(..., default_lr=...), as the
# built-ins do; an optimizer that registers none falls back to FALLBACK_LR. ``--lr`` overrides
# both, and the row records the value used.
FALLBACK_LR = 1e-3
DEFAULT_STEPS = 1000
DTYPES = ("float32", "bfloat16")
EVALS_PER_RUN = 20  # evaluations spread over a run when --eval-every is not given
EVAL_BATCH = 1024
HALF_OF_VALIDATION = "half of validation"  # the test split of a task that brings none
FINAL_METRICS = (
    "final_val_acc", "final_val_loss", "train_loss", "train_acc", "test_acc", "test_loss",
)  # fmt: skip

Log = Callable[[str], None]


def default_lr(optimizer: str, options: Mapping[str, Any] | None = None) -> float:
    """The peak learning rate a cell uses when ``--lr`` is not given: the optimizer's
    registered ``default_lr``. An optimizer that registers none but wraps another one by
    name (a ``base`` option, given or defaulted, naming a registered optimizer, as SAM does)
    trains at its base's rate; anything else at ``FALLBACK_LR``.
    """
    registry = get_registry()
    entry = registry.get("optimizer", optimizer)
    if "default_lr" in entry.metadata:
        return float(entry.metadata["default_lr"])
    base = (options or {}).get("base")
    declared = entry.options.get("base")
    if base is None and declared is not None and not declared.required:
        base = declared.default
    if isinstance(base, str) and base != optimizer and ("optimizer", base) in registry:
        return default_lr(base)
    return FALLBACK_LR


# -- data ------------------------------------------------------------------------------------


def load_task(config: Mapping[str, Any]) -> TaskData:
    """The cell's task data (a UsageError for a bad name or option)."""
    return create_task(config["task"], seed=int(config["seed"]), options=config["task_options"])


def _batches(num: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches forever: a fresh permutation per epoch, the ragged tail dropped so that
    every step sees ``batch_size`` examples (unless the data set is smaller than that)."""
    size = min(batch_size, num)
    while True:
        order = torch.randperm(num, generator=generator)
        for start in range(0, num - size + 1, size):
            yield order[start : start + size]


def loss_and_correct(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Mean cross-entropy over labelled positions, the number right, the number labelled.

    Works for one label per example ((B, C) logits) and per token ((B, N, C) logits with
    ``IGNORE_INDEX`` where no answer is asked, e.g. everything but MQAR's queries).
    """
    flat = logits.reshape(-1, logits.shape[-1]).float()
    labels = targets.reshape(-1)
    loss = F.cross_entropy(flat, labels, ignore_index=IGNORE_INDEX)
    mask = labels != IGNORE_INDEX
    correct = int((flat.argmax(dim=-1)[mask] == labels[mask]).sum())
    return loss, correct, int(mask.sum())


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: Any
) -> dict[str, float]:
    """Loss (mean over labelled positions) and accuracy over a whole split."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for start in range(0, x.shape[0], EVAL_BATCH):
        with autocast():
            logits = model(x[start : start + EVAL_BATCH])
        loss, right, labelled = loss_and_correct(logits, y[start : start + EVAL_BATCH])
        if labelled:
            total_loss += float(loss) * labelled
        correct += right
        count += labelled
    model.train(was_training)
    return {"loss": total_loss / max(count, 1), "acc": correct / max(count, 1)}


def _autocast(device: str, dtype: str) -> Callable[[], Any]:
    if dtype == "float32":
        return contextlib.nullcontext
    if dtype not in DTYPES:
        raise UsageError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    kind = device.split(":", 1)[0]
    return lambda: torch.autocast(kind, dtype=torch.bfloat16)


def split_test(
    task: TaskData,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], str]:
    """(validation, test, where the test split came from).

    A task with a test split (``x_test``/``y_test``) keeps its validation split whole. One
    without (a third-party task written before test splits existed) has its validation split
    cut in two, deterministically: the first half validates (every choice: best step, target,
    tuning), the second half is the test split, recorded as ``"half of validation"``.
    """
    x_test, y_test = getattr(task, "x_test", None), getattr(task, "y_test", None)
    if x_test is not None and y_test is not None:
        return (task.x_val, task.y_val), (x_test, y_test), "task"
    half = int(task.x_val.shape[0]) // 2
    if half < 1:
        raise UsageError("the task has no test split and fewer than 2 validation examples")
    val = (task.x_val[:half], task.y_val[:half])
    return val, (task.x_val[half:], task.y_val[half:]), HALF_OF_VALIDATION


# -- building and checking a cell ------------------------------------------------------------


def _model(config: Mapping[str, Any], task: TaskData) -> torch.nn.Module:
    return create_model(
        config["mixer"], preset=config["preset"], task=task, depth=config.get("depth"),
        dim=config.get("dim"), options=config["mixer_options"],
    )  # fmt: skip


def _optimizer(config: Mapping[str, Any], params: Any) -> torch.optim.Optimizer:
    return create_optimizer(
        config["optimizer"], params, lr=config["lr"], options=config["optimizer_options"]
    )


def build(
    config: Mapping[str, Any], task: TaskData
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The seeded model and its optimizer, exactly as the cell trains them."""
    torch.manual_seed(int(config["seed"]))
    model = _model(config, task).to(config["device"])
    return model, _optimizer(config, model.parameters())


def check_cell(config: Mapping[str, Any], task: TaskData) -> str | None:
    """Build the cell's model and optimizer once, before anything trains.

    A bad option raises (a usage error for the whole grid); a valid option that cannot work
    with this input (a window larger than the grid) returns the reason to skip the cell.
    """
    if config["dtype"] not in DTYPES:
        raise UsageError(f"--dtype: {config['dtype']!r} is not one of {', '.join(DTYPES)}")
    try:
        _model(config, task)
    except IncompatibleError as exc:
        return str(exc)
    _optimizer(config, [torch.nn.Parameter(torch.zeros(1))])
    return None


# -- the loop --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one cell produced: its summary row and its curves."""

    row: dict[str, Any]
    curves: dict[str, Any] = field(default_factory=dict)


def resolve_steps(config: Mapping[str, Any], num_train: int) -> int:
    """``steps``, or ``epochs`` whole passes over the training set at ``batch_size``."""
    batch = min(int(config["batch_size"]), num_train)
    if config.get("epochs") is not None:
        return max(1, math.ceil(float(config["epochs"]) * (num_train // batch)))
    return int(config.get("steps") or DEFAULT_STEPS)


def train_cell(
    config: Mapping[str, Any],
    *,
    task: TaskData | None = None,
    run_id: str | None = None,
    log: Log | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> Outcome:
    """Train one cell and return its row and curves.

    ``annotations`` are row fields the planner knows and the config must not hold (they
    are not what is measured): a tuned cell's ``lr_tuning`` record. Never raises for a
    failure of the cell itself: an error, an out-of-memory or a divergence becomes a status
    with a reason, so the grid goes on.
    """
    start = time.perf_counter()
    row = {**_row(config, run_id), **(annotations or {})}
    run: _Run | None = None
    try:
        with _threads(config.get("threads")):
            run = _Run(config, task if task is not None else load_task(config), log)
            run.train()
        row["metrics"] = run.metrics
        if run.diverged_at is not None:
            row["status"] = "diverged"
            row["reason"] = f"training loss became {run.diverged_value} at step {run.diverged_at}"
    except IncompatibleError as exc:
        row["status"], row["reason"] = "skipped", str(exc)
    except Exception as exc:  # one broken cell is a result, never the end of the grid
        if is_out_of_memory(exc):
            row["status"], row["reason"] = "oom", str(exc).splitlines()[0]
        else:
            row["status"], row["reason"] = "error", f"{type(exc).__name__}: {exc}"
    if run is not None and row["status"] in ("oom", "error"):
        row["metrics"] = run.metrics  # what was measured before it broke
    row["duration_s"] = round(time.perf_counter() - start, 3)
    row["metrics"] = plain(row["metrics"])
    return Outcome(row, plain(run.curves) if run is not None else {})


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count for one cell, restored afterwards. On a busy machine
    fewer threads can be much faster: every intra-op barrier waits for the slowest one."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def skipped(config: Mapping[str, Any], reason: str, *, run_id: str | None = None) -> Outcome:
    """The outcome of a cell that cannot run with its input (checked before training)."""
    row = _row(config, run_id)
    row["status"], row["reason"] = "skipped", reason
    return Outcome(row)


def _row(config: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
    row = row_skeleton("train", Cell("train", config).key, config, run_id)
    del row["runtime"]  # a training row records none
    row.update(curves_file=None, duration_s=0.0)
    return row


class _Run:
    """One cell's training run: the model, its optimizer and schedule, and what is logged."""

    def __init__(self, config: Mapping[str, Any], task: TaskData, log: Log | None) -> None:
        self.config, self.log = config, log or (lambda _line: None)
        device = config["device"]
        self.autocast = _autocast(device, config["dtype"])
        self.sync: Callable[[], None] = (
            torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        )
        self.x_train, self.y_train = task.x_train.to(device), task.y_train.to(device)
        (x_val, y_val), (x_test, y_test), test_split = split_test(task)
        self.x_val, self.y_val = x_val.to(device), y_val.to(device)
        self.x_test, self.y_test = x_test.to(device), y_test.to(device)
        num_train = int(self.x_train.shape[0])
        self.total = resolve_steps(config, num_train)
        self.batch_size = min(int(config["batch_size"]), num_train)
        self.steps_per_epoch = max(1, num_train // self.batch_size)
        self.eval_every = int(config.get("eval_every") or max(1, self.total // EVALS_PER_RUN))
        warmup = warmup_steps_for(self.total, float(config["warmup"]))

        self.model, self.optimizer = build(config, task)
        self.scheduler = make_scheduler(self.optimizer, self.total, warmup, config["schedule"])
        seed = torch.Generator().manual_seed(int(config["seed"]))
        self.batches = _batches(num_train, self.batch_size, seed)

        self.step, self.grad_evals, self.train_time = 0, 0, 0.0
        self.step_times: list[float] = []
        self.diverged_at: int | None = None
        self.diverged_value = math.nan
        self.curves: dict[str, dict[str, list[Any]]] = {
            "train": {"step": [], "time_s": [], "loss": [], "lr": []},
            "eval": {"step": [], "time_s": [], "val_loss": [], "val_acc": []},
        }
        self.metrics: dict[str, Any] = {
            "params": sum(p.numel() for p in self.model.parameters()),
            "steps_planned": self.total, "eval_every": self.eval_every,
            "warmup_steps": warmup, "lr_peak": float(config["lr"]),
            "batch_size": self.batch_size, "num_train": num_train,
            "num_val": int(self.x_val.shape[0]), "num_test": int(self.x_test.shape[0]),
            "test_split": test_split, "chance": task.chance,
            "task_info": dict(task.info), "best_val_acc": None, "best_val_acc_step": None,
            "best_val_loss": None, "steps_to_target": None, "time_to_target_s": None,
            "grad_evals_to_target": None,
        }  # fmt: skip

    def train(self) -> None:
        """Step until the budget, a divergence or the training-loss stop; then summarise."""
        self.model.train()
        while self.step < self.total:
            loss = self._one_step()
            if not math.isfinite(loss):
                self.diverged_at, self.diverged_value = self.step, loss
                break
            if (self.step % self.eval_every == 0 or self.step == self.total) and self._evaluate(
                loss
            ):
                break
        self._summarise()

    def _one_step(self) -> float:
        """One optimizer step through the closure; returns L(w) at the step's start."""
        idx = next(self.batches)
        xb, yb = self.x_train[idx], self.y_train[idx]
        first: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            self.grad_evals += 1
            self.optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                loss = loss_and_correct(self.model(xb), yb)[0]
            loss.backward()
            if not first:
                first.append(loss.detach())  # L(w); SAM's second call sees L(w + e)
            return loss

        self.sync()
        t0 = time.perf_counter()
        self.optimizer.step(closure)  # type: ignore[arg-type]  # torch types it as -> float
        self.scheduler.step()
        loss = float(first[0]) if first else math.nan
        self.sync()
        elapsed = time.perf_counter() - t0
        self.step += 1
        if math.isfinite(loss):
            self.train_time += elapsed
            self.step_times.append(elapsed)
            curve = self.curves["train"]
            curve["step"].append(self.step)
            curve["time_s"].append(round(self.train_time, 6))
            curve["loss"].append(loss)
            curve["lr"].append(self.scheduler.get_last_lr()[0])
        return loss

    def _evaluate(self, loss: float) -> bool:
        """Validate, log, keep the best and the target bookkeeping; True to stop early."""
        val = evaluate(self.model, self.x_val, self.y_val, self.autocast)
        curve, m = self.curves["eval"], self.metrics
        curve["step"].append(self.step)
        curve["time_s"].append(round(self.train_time, 6))
        curve["val_loss"].append(val["loss"])
        curve["val_acc"].append(val["acc"])
        if m["best_val_acc"] is None or val["acc"] > m["best_val_acc"]:
            m["best_val_acc"], m["best_val_acc_step"] = val["acc"], self.step
        if m["best_val_loss"] is None or val["loss"] < m["best_val_loss"]:
            m["best_val_loss"] = val["loss"]
        self.log(
            f"step {self.step}/{self.total}  loss {loss:.4f}  "
            f"val_loss {val['loss']:.4f}  val_acc {val['acc']:.4f}"
        )
        target = self.config.get("target_acc")
        if target is not None and m["steps_to_target"] is None and val["acc"] >= float(target):
            m["steps_to_target"] = self.step
            m["time_to_target_s"] = round(self.train_time, 6)
            m["grad_evals_to_target"] = self.grad_evals
        stop = self.config.get("stop_train_loss")
        if stop is None or self.step == self.total:
            return False
        full = evaluate(self.model, self.x_train, self.y_train, self.autocast)
        if full["loss"] > float(stop):
            return False
        m["stopped_early"] = f"full training loss {full['loss']:.4g} <= {stop}"
        return True

    def _summarise(self) -> None:
        m, losses = self.metrics, self.curves["train"]["loss"]
        last_epoch = losses[-self.steps_per_epoch :]
        m.update({
            "steps": self.step, "epochs": round(self.step / self.steps_per_epoch, 4),
            "grad_evals": self.grad_evals,
            "grad_evals_per_step": self.grad_evals / max(self.step, 1),
            "train_time_s": round(self.train_time, 6),
            "median_step_s": statistics.median(self.step_times) if self.step_times else None,
            "step_time_iqr_s": _iqr(self.step_times),
            # the mean over the last epoch's steps: what a training log would show
            "train_loss_last_epoch": statistics.fmean(last_epoch) if last_epoch else None,
        })  # fmt: skip
        if self.diverged_at is not None:  # the weights are not finite: nothing final to measure
            m["diverged_at_step"] = self.diverged_at
            m.update(dict.fromkeys(FINAL_METRICS))
            return
        final = evaluate(self.model, self.x_val, self.y_val, self.autocast)
        # the honest training loss: the whole training set at the final weights
        full = evaluate(self.model, self.x_train, self.y_train, self.autocast)
        # the test split, once, at the final weights: reported, never used for a choice
        test = evaluate(self.model, self.x_test, self.y_test, self.autocast)
        m.update({"final_val_acc": final["acc"], "final_val_loss": final["loss"],
                  "train_loss": full["loss"], "train_acc": full["acc"],
                  "test_acc": test["acc"], "test_loss": test["loss"]})  # fmt: skip
        if self.config.get("sharpness") or self.config.get("hessian"):
            m.update(self._sharpness())

    def _sharpness(self) -> dict[str, Any]:
        """Sharpness of the *training* loss (noisy labels included: the landscape the
        optimizer descended) on a fixed batch drawn from the seed."""
        c = self.config
        return measure_model(
            self.model, lambda logits, y: loss_and_correct(logits, y)[0],
            self.x_train, self.y_train, seed=int(c["seed"]), batch=int(c["sharpness_batch"]),
            rho=float(c["sharpness_rho"]) if c.get("sharpness") else None,
            steps=int(c["sharpness_steps"]), hessian=bool(c.get("hessian")),
        )  # fmt: skip


def _iqr(values: list[float]) -> float | None:
    if len(values) < 4:
        return None
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


# -- the result store ------------------------------------------------------------------------
