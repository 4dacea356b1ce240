"""The task contract: what a ``register_tasks`` factory returns.

A task factory is ``factory(seed: int, **options) -> TaskData``. It returns the train,
validation and test splits as tensors (the tasks mixbench targets fit in memory many times
over) and says how the shell should read the inputs. The same seed must give the same tensors,
so that a cell is reproducible from its config alone; nothing is downloaded unless the user
asks for it with an option (``cifar10``'s ``download=true``).

Three splits, three roles: the trainer fits on *train*, makes every choice (learning-rate
tuning, the best step) on *validation*, and only reports *test*, which no choice ever sees.
The three must be disjoint. ``x_test``/``y_test`` are optional so that tasks written before
test splits existed keep working: the trainer then reports on the second half of the
validation split and says so in the row. Every built-in task has a real test split.

Inputs are one of:

* ``"image"``: float tensors (num, C, H, W); the shell embeds patches onto a 2-D grid;
* ``"tokens"``: integer tensors (num, N) of ids below ``vocab_size``; a 1-D grid (N,);
* ``"features"``: float tensors (num, N, F); a 1-D grid (N,).

Targets are class indices: (num,) for one label per example, or (num, N) for one label per
token with ``IGNORE_INDEX`` where no loss is taken (``per_token=True``).

A *causal* task (``causal=True``) is a sequence task scored per token in which the answer at
position t may depend on positions up to t only, as in a decoder language model. The shell
then builds every mixer with ``causal=True`` (a mixer whose factory has no ``causal`` option
is skipped with the reason, never run bidirectionally), so a causal task needs ``per_token``
targets and a 1-D grid ("tokens" or "features" input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    import torch

IGNORE_INDEX = -100
InputKind = Literal["image", "tokens", "features"]


@dataclass
class TaskData:
    """A training problem, fully materialised."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    input: InputKind
    per_token: bool = False
    vocab_size: int | None = None  # for "tokens"
    # (H, W) for images; (N,) for sequences. Derived from the tensors when left empty.
    shape: tuple[int, ...] = ()
    chance: float | None = None  # accuracy of guessing, for tables
    info: dict[str, Any] = field(default_factory=dict)  # anything worth recording in a row
    # Held out from every choice; None for tasks without one (the trainer then reports on
    # the second half of the validation split).
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    causal: bool = False  # predictions at t may use positions <= t only (decoder-style)

    def __post_init__(self) -> None:
        if not self.shape:
            if self.input == "image":
                self.shape = tuple(int(s) for s in self.x_train.shape[-2:])
            else:
                self.shape = (int(self.x_train.shape[1]),)
        if self.input == "tokens" and self.vocab_size is None:
            raise ValueError("a 'tokens' task must give vocab_size")
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError("a task gives both x_test and y_test, or neither")
        if self.causal and (self.input == "image" or not self.per_token):
            raise ValueError(
                "a causal task predicts per token on a sequence: it needs per_token=True and "
                f"'tokens' or 'features' input (got input={self.input!r}, "
                f"per_token={self.per_token})"
            )

    @property
    def in_channels(self) -> int:
        """Image channels or feature width; 0 for token ids."""
        if self.input == "image":
            return int(self.x_train.shape[1])
        if self.input == "features":
            return int(self.x_train.shape[-1])
        return 0
