"""cnnlab.optim against torch.optim: the same parameters step for step, the same lr and momentum
sequence, state dicts that cross both ways, and a training command that never imports
torch._dynamo (torch.optim's import of it was a second of every `cnnlab train`)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab import optim

REPO = Path(__file__).resolve().parents[1]

# name -> (ours, torch's), over (params, lr, weight decay, betas)
PAIRS = {
    "adam": (
        optim.OPTIMIZERS["adam"],
        lambda p, lr, wd, betas: torch.optim.Adam(p, lr, betas, weight_decay=wd),
    ),
    "adamw": (
        optim.OPTIMIZERS["adamw"],
        lambda p, lr, wd, betas: torch.optim.AdamW(p, lr, betas, weight_decay=wd),
    ),
    "sgd": (
        optim.OPTIMIZERS["sgd"],
        lambda p, lr, wd, betas: torch.optim.SGD(p, lr, momentum=0.9, nesterov=True, weight_decay=wd),
    ),
}


def net() -> nn.Module:
    """A conv, a frozen layer (no gradient, no state) and an unused one (a None gradient)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10), nn.Linear(10, 10))
    model[2].bias.requires_grad_(False)
    model.unused = nn.Linear(3, 3)
    return model


def torch_schedule(name: str, opt, lr: float, steps: int, cycle: bool):
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, lr, total_steps=steps, pct_start=max(0.25, 2 / steps), cycle_momentum=cycle
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if name == "cosine" else None


def train(model, opt, sched, steps: int, seed: int = 1) -> list[float]:
    """`steps` steps on fixed random batches; the lr each step ran with."""
    gen = torch.Generator().manual_seed(seed)
    lrs = []
    for _ in range(steps):
        x, y = torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model[:4](x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return lrs


def assert_same_params(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize(
    ("schedule", "cycle"),
    [("constant", False), ("onecycle", True), ("onecycle", False), ("cosine", False)],
)
@pytest.mark.parametrize("wd", [0.0, 5e-3])
def test_the_same_steps_as_torch_optim(name, schedule, cycle, wd):
    ours_make, torch_make = PAIRS[name]
    lr, steps, betas = 0.02, 24, (0.8, 0.95)
    a, b = net(), net()
    ours = ours_make(a.parameters(), lr, wd, betas)
    theirs = torch_make(b.parameters(), lr, wd, betas)
    lrs_a = train(a, ours, optim.SCHEDULES[schedule](ours, lr, steps, cycle), steps)
    lrs_b = train(b, theirs, torch_schedule(schedule, theirs, lr, steps, cycle), steps)
    assert lrs_a == pytest.approx(lrs_b, rel=1e-9, abs=1e-15)
    assert_same_params(a, b)
    key = "betas" if name != "sgd" else "momentum"
    assert ours.param_groups[0][key] == pytest.approx(theirs.param_groups[0][key])
    assert a[2].bias not in ours.state and a.unused.weight not in ours.state  # no gradient, no state


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("direction", ["ours to torch", "torch to ours"])
def test_a_state_dict_crosses_to_the_other_and_training_goes_on_alike(name, direction):
    """A resume state written by either implementation continues in the other."""
    ours_make, torch_make = PAIRS[name]
    first, second = (ours_make, torch_make) if direction == "ours to torch" else (torch_make, ours_make)
    lr, wd, betas = 0.02, 1e-3, (0.9, 0.99)
    straight = net()
    opt = first(straight.parameters(), lr, wd, betas)
    train(straight, opt, None, 6)
    saved = copy.deepcopy(opt.state_dict())  # as written to and read from a file
    resumed = net()
    resumed.load_state_dict(straight.state_dict())
    other = second(resumed.parameters(), lr, wd, betas)
    other.load_state_dict(saved)
    train(straight, opt, None, 6, seed=2)
    train(resumed, other, None, 6, seed=2)
    assert_same_params(straight, resumed)


def test_a_schedule_resumes_from_its_own_state_or_torchs():
    def adam():
        return optim.OPTIMIZERS["adam"](net().parameters(), 0.01, 0.0, (0.9, 0.999))

    ours = optim.SCHEDULES["onecycle"](adam(), 0.01, 40, True)
    torch_opt = torch.optim.Adam(net().parameters(), 0.01)
    theirs = torch_schedule("onecycle", torch_opt, 0.01, 40, True)
    for _ in range(17):
        ours.step()
        torch_opt.step()  # no gradients: torch only wants the order
        theirs.step()
    saved = {"ours": ours.state_dict(), "torch's": theirs.state_dict()}
    torch_opt.step()
    theirs.step()
    for where, state in saved.items():
        opt = adam()
        again = optim.SCHEDULES["onecycle"](opt, 0.01, 40, True)
        again.load_state_dict(state)
        again.step()
        assert again.last_epoch == 18, where
        assert opt.param_groups[0]["lr"] == pytest.approx(torch_opt.param_groups[0]["lr"]), where
        assert opt.param_groups[0]["betas"] == pytest.approx(torch_opt.param_groups[0]["betas"]), where
    with pytest.raises(ValueError, match="step 41 of 40"):
        optim.SCHEDULES["onecycle"](adam(), 0.01, 40, True).load_state_dict({"last_epoch": 41})


def test_another_models_state_is_refused_with_a_value_error():
    model = net()
    opt = optim.OPTIMIZERS["adam"](model.parameters(), 0.01, 0.0, (0.9, 0.999))
    train(model, opt, None, 2)
    saved = opt.state_dict()
    other = nn.Sequential(nn.Conv2d(1, 5, 3), nn.Flatten(), nn.Linear(5 * 6 * 6, 10), nn.Linear(10, 10))
    other.unused = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="shape"):
        optim.OPTIMIZERS["adam"](other.parameters(), 0.01, 0.0, (0.9, 0.999)).load_state_dict(saved)
    with pytest.raises(ValueError, match="parameters"):
        optim.OPTIMIZERS["adam"](model[0].parameters(), 0.01, 0.0, (0.9, 0.999)).load_state_dict(saved)


def test_training_never_imports_torch_dynamo(tmp_path):
    """`fit` on real files, in a fresh process: torch._dynamo stays out (a second of start-up)."""
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from tests.conftest import write_fake_dataset\n"
        "from cnnlab.data import datasets\nfrom cnnlab.config import make_config\n"
        "from cnnlab.train import fit\n"
        f"datasets.DATASETS['fake'] = write_fake_dataset(Path({str(tmp_path)!r}))\n"
        f"data = {str(tmp_path)!r}\n"
        "for opt, sched in (('adam', 'onecycle'), ('sgd', 'cosine')):\n"
        "    config = make_config(dataset='fake', data_root=data, device='cpu', threads=1, epochs=1,\n"
        "                         optimizer=opt, schedule=sched, batch_size=64, model='cnn')\n"
        f"    fit(config, Path({str(tmp_path)!r}) / opt)\n"
        "sys.exit('torch._dynamo imported' if 'torch._dynamo' in sys.modules else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-800:]
    assert (tmp_path / "adam" / "curves.png").is_file() and (tmp_path / "sgd" / "resume.json").is_file()
