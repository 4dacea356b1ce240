"""Sharpness-Aware Minimization around any registered optimizer.

SAM (Foret et al. 2021, https://arxiv.org/abs/2010.01412) minimises the worst loss in a ball of
radius ``rho`` around the weights. One step, with g = grad L(w):

    e  = rho * g / ||g||_2                   (the first-order worst direction; global norm)
    g' = grad L(w + e)                       (second forward/backward pass)
    w  = base_step(w, g')                    (any optimizer, fed the perturbed gradient)

ASAM (``adaptive=true``; Kwon et al. 2021, https://arxiv.org/abs/2102.11600) measures the ball
relative to each weight's scale, which makes the sharpness it sees invariant to rescaling:

    e  = rho * w^2 * g / ||w * g||_2

The base optimizer is looked up by name in the registry, so ``sam`` wraps a third-party
optimizer exactly as it wraps ``sgd``. The two share ``param_groups`` (the same dicts), so an LR
scheduler attached to ``sam`` changes the learning rate the base uses, and ``state_dict`` is the
base's state plus ``rho``/``adaptive`` in each group.

Cost: every step evaluates the closure twice (``grad_evals_per_step = 2`` says so to readers
and tools). ``mixbench train`` counts the closure calls themselves, so its "gradient
evaluations" column compares SAM with plain optimizers honestly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

import mixbench
from mixbench.errors import OptionError

Closure = Callable[[], Any]

_EPS = 1e-12  # keeps e finite when the gradient vanishes


class SAM(torch.optim.Optimizer):
    """SAM/ASAM wrapper. Build it through ``make_sam`` (which resolves the base by name).

    ``base_factory`` has the plugin optimizer signature ``factory(params, lr, **options)``.
    """

    #: Closure evaluations (forward + backward passes) per ``step``; plain optimizers do one.
    grad_evals_per_step = 2

    def __init__(
        self,
        params: Iterable[Any],
        base_factory: Callable[..., torch.optim.Optimizer],
        lr: float,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        **base_options: Any,
    ) -> None:
        if rho < 0:
            raise OptionError(f"sam: rho must be >= 0, got {rho}")
        super().__init__(params, {"lr": lr, "rho": rho, "adaptive": adaptive})
        base = base_factory(self.param_groups, lr, **base_options)
        if not isinstance(base, torch.optim.Optimizer):
            raise OptionError(
                f"sam: the base factory returned {type(base).__name__}, not an Optimizer"
            )
        if getattr(base, "grad_evals_per_step", 1) != 1:
            raise OptionError(
                f"sam: the base optimizer {type(base).__name__} evaluates the loss more than once "
                "per step itself; wrap a plain optimizer"
            )
        self.base = base
        # Share the group dicts and the state with the base: a scheduler or a checkpoint that
        # talks to ``sam`` then talks to the optimizer that actually moves the weights.
        self.param_groups = base.param_groups
        self.state = base.state
        for group in self.param_groups:
            group.setdefault("rho", rho)
            group.setdefault("adaptive", adaptive)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        base = getattr(self, "base", None)
        if base is None:  # during our own __init__
            super().add_param_group(param_group)
            return
        param_group.setdefault("rho", self.defaults["rho"])
        param_group.setdefault("adaptive", self.defaults["adaptive"])
        base.add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:  # type: ignore[override]
        """One SAM step; returns the loss at the unperturbed weights, L(w)."""
        if closure is None:
            raise TypeError(
                "sam.step needs a closure (zero grads, forward, backward, return loss): "
                "SAM evaluates the gradient twice per step"
            )
        with torch.enable_grad():
            loss = closure()

        perturbed = self._perturb()
        with torch.enable_grad():
            perturbed_loss = closure()
        for param, original in perturbed:
            param.copy_(original)  # exact restore, no w + e - e rounding

        # The base sees the gradient at w + e. If it calls the closure it gets the loss at
        # w + e without another pass, so the cost stays at two evaluations.
        self.base.step(lambda: perturbed_loss)
        return loss

    def _perturb(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Move every parameter with a gradient to w + e; return (param, original) pairs."""
        with_grad = [
            (group, p) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if not with_grad:
            return []
        device = with_grad[0][1].device
        scaled = [
            (p.abs() * p.grad if group["adaptive"] else p.grad).norm(2).to(device)
            for group, p in with_grad
        ]
        norm = torch.linalg.vector_norm(torch.stack(scaled), 2)
        saved = []
        for group, p in with_grad:
            e = p.grad * (group["rho"] / (norm.to(p.device) + _EPS))
            if group["adaptive"]:
                e = e * p.square()
            saved.append((p, p.detach().clone()))
            p.add_(e)
        return saved

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict; its groups carry ``rho`` and ``adaptive``."""
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        # torch replaces the group list and state on load: share the new ones again.
        self.param_groups = self.base.param_groups
        self.state = self.base.state


def make_sam(
    params: Iterable[Any],
    lr: float,
    *,
    base: str = "sgd",
    rho: float = 0.05,
    adaptive: bool = False,
    **base_options: Any,
) -> torch.optim.Optimizer:
    """SAM around the registered optimizer ``base``; other options go to the base.

    ``rho`` 0.05 is the paper's CIFAR setting for SAM; ASAM usually wants a larger one (the
    paper uses 0.5 to 2.0 with SGD), because the adaptive ball is scaled by the weights.
    """
    from mixbench.plugins import get_registry

    entry = get_registry().get("optimizer", base)  # UnknownNameError for a bad name
    if entry.factory is make_sam or base == "sam":
        raise OptionError("sam: base='sam' would nest SAM inside itself; choose e.g. sgd or adam")
    options = entry.validate_options(base_options)
    return SAM(params, entry.factory, lr, rho=rho, adaptive=adaptive, **options)


@mixbench.hookimpl
def register_optimizers(register: Any) -> None:
    register(
        "sam",
        make_sam,
        description="Sharpness-Aware Minimization (Foret et al. 2021) around any optimizer "
        "(base=NAME, its options passed through); adaptive=true for ASAM; 2 gradient "
        "evaluations per step",
        # no default_lr: SAM trains at its base's registered rate (``base`` names it)
    )
