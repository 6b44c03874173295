"""Optimisers and learning-rate schedules: Adam, AdamW, Nesterov SGD; OneCycle and cosine.

Why not torch.optim: its optimisers import torch._dynamo on their first call, a second of
every training command's start-up (longer than the `fast` recipe trains). These are
torch.optim's own multi-tensor arithmetic and OneCycleLR/CosineAnnealingLR's formulas,
checked against them step for step in tests/test_optim.py, and they keep torch's state_dict
layout, so a resume state written by either reads back into the other. A CUDA-graph run
records torch.optim's capturable Adam instead (cnnlab.cuda_graphs).

The names are `cnnlab.config.OPTIMIZER_NAMES` / `SCHEDULE_NAMES` (config stays torch-free);
a test checks the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class Optimizer:
    """What the training loop needs of an optimiser: param_groups, state, step, state_dict.

    One parameter group; `state` maps a parameter to its tensors, created at its first step
    (a parameter that never gets a gradient, e.g. a frozen stem, has none).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], defaults: dict):
        params = list(params)
        if not params:
            raise ValueError("the optimiser got no parameters")
        self.defaults = dict(defaults)
        self.param_groups = [{**defaults, "params": params}]
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            self._update(group, params, [p.grad for p in params])

    def _update(self, group: dict, params: list, grads: list) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """torch.optim's layout: state by parameter index, the group with its hyperparameters."""
        params = self.param_groups[0]["params"]
        index = {id(p): i for i, p in enumerate(params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "state": {index[id(p)]: dict(s) for p, s in self.state.items()},
            "param_groups": [{**group, "params": list(range(len(params)))}],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Read `state_dict()` (or torch.optim's) back; ValueError when it is another model's."""
        (saved,) = state_dict["param_groups"]  # ValueError for another number of groups
        params = self.param_groups[0]["params"]
        if len(saved["params"]) != len(params):
            raise ValueError(f"the saved state has {len(saved['params'])} parameters, not {len(params)}")
        self.param_groups[0].update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, tensors in state_dict["state"].items():
            p = params[int(i)]
            self.state[p] = {name: _like(p, name, t) for name, t in tensors.items()}


def _like(param: torch.Tensor, name: str, t: torch.Tensor) -> torch.Tensor:
    if name == "step":  # a float32 scalar on the CPU, as torch.optim keeps it
        return torch.as_tensor(t).to("cpu", torch.float32, copy=True)
    if t.shape != param.shape:
        raise ValueError(
            f"saved {name} of shape {tuple(t.shape)} for a parameter of {tuple(param.shape)}"
        )
    return t.to(param.device, param.dtype, copy=True)  # never shared with the state given


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015); `decoupled` makes it AdamW (Loshchilov & Hutter 2019)."""

    def __init__(
        self, params, lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0, decoupled=False
    ):
        super().__init__(
            params,
            {
                "lr": lr,
                "betas": tuple(betas),
                "eps": 1e-8,
                "weight_decay": weight_decay,
                "decoupled_weight_decay": decoupled,
            },
        )

    def _update(self, group: dict, params: list, grads: list) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        states = [self._state(p) for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1.0)
        if wd and group["decoupled_weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * wd)
        elif wd:
            grads = torch._foreach_add(grads, params, alpha=wd)  # L2: the gradient of wd/2 |w|^2
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        counts = [s.item() for s in steps]
        step_sizes = [-lr / (1 - beta1**n) for n in counts]
        bias2_sqrt = [(1 - beta2**n) ** 0.5 for n in counts]
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)

    def _state(self, p: torch.Tensor) -> dict:
        if p not in self.state:
            zeros = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
            self.state[p] = {"step": torch.tensor(0.0), "exp_avg": zeros(), "exp_avg_sq": zeros()}
        return self.state[p]


class SGD(Optimizer):
    """SGD with Nesterov momentum (Sutskever et al. 2013) and L2 weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(params, {**defaults, "dampening": 0.0, "nesterov": True})  # torch's keys

    def _update(self, group: dict, params: list, grads: list) -> None:
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd:
            grads = torch._foreach_add(grads, params, alpha=wd)
        known = [p in self.state for p in params]  # a dict of tensors: found by identity
        bufs = [self.state[p]["momentum_buffer"] for p, k in zip(params, known, strict=True) if k]
        if bufs:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, [g for g, k in zip(grads, known, strict=True) if k])
        for p, g, k in zip(params, grads, known, strict=True):
            if not k:  # the first step's buffer is the gradient itself
                self.state[p] = {"momentum_buffer": g.detach().clone()}
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        grads = torch._foreach_add(grads, bufs, alpha=momentum)  # Nesterov: look one step ahead
        torch._foreach_add_(params, grads, alpha=-lr)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adam": lambda params, lr, wd, betas: Adam(params, lr, betas, wd),
    "adamw": lambda params, lr, wd, betas: Adam(params, lr, betas, wd, decoupled=True),
    "sgd": lambda params, lr, wd, betas: SGD(params, lr, 0.9, wd),
}

# optimisers whose step a CUDA graph can record (a device step counter, a tensor lr): torch.optim's
# capturable Adam, whose arithmetic Adam above follows (cnnlab.cuda_graphs)
CAPTURABLE_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, lr, wd, betas: torch.optim.Adam(params, lr, betas, weight_decay=wd),
    "adamw": lambda params, lr, wd, betas: torch.optim.AdamW(params, lr, betas, weight_decay=wd),
}


def make_optimizer(config, params, capturable: bool = False):
    """config.optimizer over `params`; `capturable`: one a CUDA graph can record."""
    table = CAPTURABLE_OPTIMIZERS if capturable else OPTIMIZERS
    return table[config.optimizer](params, config.lr, config.weight_decay, tuple(config.adam_betas))


# --- schedules: stepped once per batch, after the optimiser ---------------------------------------


class Schedule:
    """Sets the group's lr (and momentum) from the step count; `state_dict` is that count."""

    def __init__(self, optimizer, lr: float, steps: int):
        self.optimizer, self.base_lr, self.total_steps = optimizer, lr, steps
        self.last_epoch = 0  # torch's name: the steps taken so far
        self._apply()

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def _values(self, step: int) -> tuple[float, float | None]:
        raise NotImplementedError

    def _apply(self) -> None:
        lr, momentum = self._values(self.last_epoch)
        group = self.optimizer.param_groups[0]
        if isinstance(group["lr"], torch.Tensor):  # a CUDA graph reads it from the device
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
        if momentum is not None and "betas" in group:
            group["betas"] = (momentum, *group["betas"][1:])
        elif momentum is not None:
            group["momentum"] = momentum

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        """Read `state_dict()` back, or torch's (which also has a last_epoch)."""
        if int(state["last_epoch"]) > self.total_steps:
            raise ValueError(
                f"the saved schedule is at step {state['last_epoch']} of {self.total_steps}"
            )
        self.last_epoch = int(state["last_epoch"])  # the group's lr came with the optimiser state


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


class OneCycle(Schedule):
    """Warm up from lr/25 to lr, anneal to lr/25e4, both on a cosine (Smith 2018), as torch.

    With `cycle_momentum` Adam's beta1 (SGD's momentum) moves the other way, 0.95 -> 0.85 -> 0.95.
    """

    def __init__(self, optimizer, lr: float, steps: int, pct_start: float, cycle_momentum: bool):
        self.phases = (pct_start * steps - 1, steps - 1)
        self.lrs = (lr / 25, lr, lr / 25 / 1e4)
        self.cycle_momentum, self.momenta = cycle_momentum, (0.95, 0.85, 0.95)
        super().__init__(optimizer, lr, steps)

    def _values(self, step: int) -> tuple[float, float | None]:
        if step > self.total_steps:
            raise ValueError(f"stepped {step} times, past the schedule's {self.total_steps} steps")
        warm_end, end = self.phases
        phase = 0 if step <= warm_end else 1
        start_step = 0.0 if phase == 0 else warm_end
        pct = (step - start_step) / ((warm_end if phase == 0 else end) - start_step)
        lr = _cos(self.lrs[phase], self.lrs[phase + 1], pct)
        momentum = _cos(self.momenta[phase], self.momenta[phase + 1], pct)
        return lr, momentum if self.cycle_momentum else None


class Cosine(Schedule):
    """Anneal from lr to 0 over the run on a half cosine (Loshchilov & Hutter 2017)."""

    def _values(self, step: int) -> tuple[float, float | None]:
        return self.base_lr * (1 + math.cos(math.pi * step / self.total_steps)) / 2, None


def onecycle(optimizer, lr: float, steps: int, cycle_momentum: bool) -> OneCycle | None:
    """The OneCycle schedule; None when too short to cycle (it needs a step up and a step down)."""
    if steps < 3:
        return None
    pct_start = max(0.25, 2 / steps)  # at least one warm-up step
    return OneCycle(optimizer, lr, steps, pct_start, cycle_momentum)


# schedule name -> builder(optimizer, peak lr, total steps, cycle momentum)
SCHEDULES: dict[str, Callable[..., Schedule | None]] = {
    "constant": lambda opt, lr, steps, cycle: None,
    "onecycle": onecycle,
    "cosine": lambda opt, lr, steps, cycle: Cosine(opt, lr, steps),
}
