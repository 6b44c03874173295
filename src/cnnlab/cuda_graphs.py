"""CUDA graphs for the training step: one replay instead of ~100 kernel launches per step.

A small net's step on a GPU is bound by launching its kernels from Python, not by the kernels.
`fit` records the full-batch step once (`CapturedStep`) and replays it for every later batch.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.devices import autocast
from cnnlab.optim import CAPTURABLE_OPTIMIZERS


def cuda_graphs_apply(config, device: torch.device, world_size: int) -> bool:
    """Whether fit records its training step as a CUDA graph (see CapturedStep)."""
    return (
        config.cuda_graphs
        and device.type == "cuda"
        and world_size == 1
        and config.optimizer in CAPTURABLE_OPTIMIZERS
    )


class CapturedStep:
    """A training step (forward, loss, backward, optimiser) recorded once and replayed.

    A small net's step on a GPU is bound by launching ~100 tiny kernels from Python, not by
    the kernels; replaying a recorded CUDA graph launches them all at once. The first
    WARMUP steps run eagerly on a side stream (capture needs warmed-up kernels and optimiser
    state; they are ordinary training steps), the next full batch is copied into static
    input tensors and recorded, and every later full batch is copied in and replayed. Short
    batches run eagerly. The optimiser's lr lives in a device tensor while the step is
    recorded, so the scheduler's per-step updates reach the replays; `close()` puts it back
    to a float for the state dict.
    """

    WARMUP = 3

    def __init__(self, model: nn.Module, optimizer, loss_fn: nn.Module, bf16: bool):
        self.model, self.optimizer, self.loss_fn, self.bf16 = model, optimizer, loss_fn, bf16
        self.device = next(model.parameters()).device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.steps = 0
        self.capturable = [g["capturable"] for g in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["capturable"] = True  # the step counters live on the device
            group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
        for state in optimizer.state.values():  # e.g. loaded from a resume state on the CPU
            if "step" in state and state["step"].device != self.device:
                state["step"] = state["step"].to(self.device, torch.float32)

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.bf16, cache=False):
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return logits.detach(), loss.detach()  # let the autograd graph go

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on (x, y); returns (logits, loss), valid until the next call."""
        self.steps += 1
        if self.graph is not None and x.shape == self.x.shape and x.stride() == self.x.stride():
            self.x.copy_(x)
            self.y.copy_(y)
            self.graph.replay()
            return self.logits, self.loss
        if self.graph is not None or self.steps <= self.WARMUP:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                out = self._eager(x, y)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return out
        self.x, self.y = x.clone(memory_format=torch.preserve_format), y.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward creates them
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits, self.loss = self._eager(self.x, self.y)
        self.graph.replay()  # recording ran nothing: this is the step
        return self.logits, self.loss

    def close(self) -> None:
        """Floats again for the optimiser's lr and flags (a CPU resume of the state works)."""
        for group, capturable in zip(self.optimizer.param_groups, self.capturable, strict=True):
            group["lr"] = float(group["lr"])
            group["capturable"] = capturable
