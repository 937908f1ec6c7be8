"""How the service spreads over the cores it really has: worker processes and their threads.

One Python process cannot keep several cores busy with HTTP parsing, multipart, image decoding
and PNG encoding (the GIL), so on the CPU the service runs one worker process per usable core,
each with its own model instance and micro-batcher (like Triton's `instance_group`), each with
threads for its share of the cores. On a GPU one process owns the device, so its batcher forms
batches across every request; the other cores decode and encode images for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.cpu_budget import CpuBudget, cpu_budget, split_threads
from service.settings import ServiceSettings


@dataclass(frozen=True)
class ServingPlan:
    budget: CpuBudget
    workers: int
    torch_threads: int  # per worker
    codec_threads: int  # per worker

    def describe(self) -> str:
        return (
            f"{self.workers} worker{'s' if self.workers != 1 else ''} on {self.budget}, each "
            f"with {self.torch_threads} torch and {self.codec_threads} codec thread"
            f"{'s' if self.codec_threads != 1 else ''}"
        )


def serving_plan(
    settings: ServiceSettings, device_type: str, *, default_workers: int | None = None
) -> ServingPlan:
    """Workers and threads for `settings` on a device of `device_type` ("cpu" or "cuda");
    what the settings name explicitly wins, the rest comes from the CPU budget. Without
    VAEGAN_WORKERS the plan has `default_workers`, else one per core on the CPU, one on a GPU."""
    budget = cpu_budget(settings.cpus)
    workers = settings.workers or default_workers or (budget.cores if device_type == "cpu" else 1)
    split = split_threads(max(1, budget.cores // workers), device_type=device_type)
    return ServingPlan(
        budget=budget,
        workers=workers,
        torch_threads=settings.torch_threads or split.torch_threads,
        codec_threads=settings.decode_threads or split.codec_threads,
    )
