"""Lion's update checked against the paper's Algorithm 2 computed by hand."""

from __future__ import annotations

import mixbench
import pytest
import torch
from mixbench.errors import OptionError

from mixbench_fourier.lion import Lion, make_lion


def test_two_steps_by_hand() -> None:
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = Lion([weight], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    grads = [torch.tensor([0.3, -0.1, 0.0]), torch.tensor([-0.2, -0.4, 1.0])]

    weight.grad = grads[0].clone()
    opt.step()
    # m = 0: update = sign(0.1 * g) = sign(g); p = p * (1 - 0.1 * 0.5) - 0.1 * update
    first = torch.tensor([1.0 * 0.95 - 0.1, -2.0 * 0.95 + 0.1, 0.5 * 0.95 - 0.0])
    torch.testing.assert_close(weight.detach(), first)
    momentum = 0.01 * grads[0]
    torch.testing.assert_close(opt.state[weight]["exp_avg"], momentum)

    weight.grad = grads[1].clone()
    opt.step()
    update = torch.sign(0.9 * momentum + 0.1 * grads[1])
    torch.testing.assert_close(weight.detach(), first * 0.95 - 0.1 * update)
    torch.testing.assert_close(opt.state[weight]["exp_avg"], 0.99 * momentum + 0.01 * grads[1])


def test_step_with_closure_returns_the_loss() -> None:
    weight = torch.nn.Parameter(torch.ones(2))
    opt = make_lion([weight], lr=0.01)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (weight**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(2.0)
    torch.testing.assert_close(weight.detach(), torch.full((2,), 0.99))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"betas": (0.9, 1.0)}, "betas"), ({"weight_decay": -1.0}, "weight_decay")],
)
def test_bad_options_are_option_errors(options, message) -> None:
    with pytest.raises(OptionError, match=message):
        make_lion([torch.nn.Parameter(torch.ones(1))], lr=0.1, **options)


def test_options_from_the_command_line_are_converted(mixbench_only) -> None:
    mixbench_only("mixbench-fourier")
    weight = torch.nn.Parameter(torch.ones(1))
    opt = mixbench.create_optimizer("lion", [weight], lr=0.1, options={"betas": "0.95,0.98"})
    assert opt.param_groups[0]["betas"] == (0.95, 0.98)
