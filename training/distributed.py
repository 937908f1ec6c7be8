"""Single-process and `torchrun` multi-process training behind one small interface.

Under torchrun each network is wrapped in DistributedDataParallel (NCCL on GPUs, gloo on CPUs), so
gradients are averaged across ranks during the backward passes. The trainer also averages the
step's loss figures (so every rank takes the same equilibrium decision) and the batch-norm
buffers (so every rank holds the same model, and rank 0's checkpoint represents all of them).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from model.device import select_device


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes of this job on this machine, sharing its cores
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, module: nn.Module) -> nn.Module:
        if not self.distributed:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Buffers are averaged after each step (`sync_buffers`) rather than overwritten from
        # rank 0 at every forward; newer torch names that switch `forward_sync_buffers`.
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
            return DistributedDataParallel(
                module, device_ids=device_ids, forward_sync_buffers=False
            )
        return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)

    def mean_of(self, values: dict[str, float]) -> dict[str, float]:
        if not self.distributed or not values:
            return values
        names = sorted(values)
        packed = torch.tensor([values[n] for n in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(packed)
        return {n: float(v) / self.world_size for n, v in zip(names, packed.tolist(), strict=True)}

    def sync_buffers(self, module: nn.Module) -> None:
        if not self.distributed:
            return
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(self.world_size)

    def check_in_sync(self, module: nn.Module) -> float:
        """Every rank must hold the same weights; returns the checksum or raises."""
        checksum = torch.zeros(1, dtype=torch.float64, device=self.device)
        for tensor in [*module.parameters(), *module.buffers()]:
            checksum += tensor.detach().double().sum()
        if not self.distributed:
            return float(checksum)
        gathered = [torch.zeros_like(checksum) for _ in range(self.world_size)]
        dist.all_gather(gathered, checksum)
        values = [float(g) for g in gathered]
        if len(set(values)) != 1:
            raise RuntimeError(f"ranks out of sync: weight checksums {values}")
        return values[0]

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(requested_device: str) -> DistributedContext:
    """Join the torchrun job described by the environment, or run as one process."""
    device = select_device(requested_device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    return DistributedContext(rank, world_size, local_rank, local_world, device)
