"""One micro-batcher: concurrent requests' forward passes grouped into batches, off the event loop.

Requests submit rows (images or latents) for one `Operation` ("encode", "decode", "reconstruct",
"features"). A single worker task takes the oldest waiting operation, gathers that operation's
rows until the batch is full or `max_delay` has passed, and runs one forward pass on a dedicated
model thread. While it runs, new requests queue up, so under load batches fill by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch import Tensor

from service.metrics import ServiceMetrics
from service.predictor import Operation

Runner = Callable[[Operation, Tensor], tuple[Tensor, ...]]


class QueueFullError(RuntimeError):
    """More rows are waiting than the queue allows; the client should retry later."""


class BatcherClosedError(RuntimeError):
    """The service is shutting down."""


@dataclass(eq=False)  # jobs are compared by identity, never by their tensors
class _Job:
    operation: Operation
    rows: Tensor
    future: asyncio.Future[tuple[Tensor, ...]]
    sequence: int
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])


class MicroBatcher:
    def __init__(
        self,
        runner: Runner,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        metrics: ServiceMetrics,
        torch_threads: int | None = None,
    ) -> None:
        self.runner = runner
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.metrics = metrics
        self._waiting: dict[Operation, deque[_Job]] = {}
        self._queued_rows = 0
        self._expected = 0  # requests still decoding their uploads: rows on their way
        self._sequence = itertools.count()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

        def model_thread_setup() -> None:
            if torch_threads is not None:
                torch.set_num_threads(torch_threads)

        # One thread runs every forward: the model is used by one batch at a time.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="vaegan-model", initializer=model_thread_setup
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for jobs in self._waiting.values():
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(BatcherClosedError("the service is shutting down"))
        self._executor.shutdown(wait=True)

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark a request whose rows are being prepared (images decoding), so a forward that is
        about to start waits for them, up to max_delay, instead of leaving without them."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1
            self._wakeup.set()

    async def on_model_thread(self, function: Callable[..., object], *args: object) -> object:
        """Run `function` on the model thread (e.g. a warm-up), in turn with the batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # -- submitting ------------------------------------------------------------------------------

    def check_capacity(self, rows: int) -> None:
        """Raise QueueFullError now if `rows` more would not fit: callers check before costly
        work such as decoding uploads, so a refusal under overload is fast."""
        if self._queued_rows + rows > self.max_queue:
            raise QueueFullError(
                f"{self._queued_rows} images are already waiting (limit {self.max_queue})"
            )

    async def submit(self, operation: Operation, rows: Tensor) -> tuple[Tensor, ...]:
        """Run `operation` on `rows` (N, ...) as part of shared batches; outputs keep row order."""
        if self._closed:
            raise BatcherClosedError("the service is shutting down")
        self.check_capacity(rows.shape[0])
        loop = asyncio.get_running_loop()
        jobs = []
        # Oversized requests are split so no forward pass exceeds max_batch_size.
        step = self.max_batch_size
        for chunk in (rows[start : start + step] for start in range(0, rows.shape[0], step)):
            job = _Job(operation, chunk, loop.create_future(), next(self._sequence))
            self._waiting.setdefault(operation, deque()).append(job)
            self._queued_rows += job.size
            jobs.append(job)
        self.metrics.queue_depth.set(self._queued_rows)
        self._wakeup.set()
        try:
            results = [await job.future for job in jobs]
        except asyncio.CancelledError:
            # The request timed out or the client left: drop what has not started.
            for job in jobs:
                self._withdraw(job)
            raise
        return tuple(torch.cat(parts) for parts in zip(*results, strict=True))

    def _withdraw(self, job: _Job) -> None:
        waiting = self._waiting.get(job.operation)
        if waiting is not None and job in waiting:
            waiting.remove(job)
            self._queued_rows -= job.size
            self.metrics.queue_depth.set(self._queued_rows)
        if not job.future.done():
            job.future.cancel()

    # -- the worker ------------------------------------------------------------------------------

    def _oldest_operation(self) -> Operation | None:
        heads = [(jobs[0].sequence, op) for op, jobs in self._waiting.items() if jobs]
        return min(heads)[1] if heads else None

    def _rows_waiting(self, operation: Operation) -> int:
        return sum(job.size for job in self._waiting.get(operation, ()))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            operation = self._oldest_operation()
            if operation is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Wait up to max_delay for company, but only while requests are on their way: a lone
            # request on an idle model goes at once; under load batches fill while the previous
            # forward runs and while the next requests finish decoding.
            deadline = loop.time() + self.max_delay_s
            while True:
                self._wakeup.clear()  # before checking, so a submit in between is not missed
                remaining = deadline - loop.time()
                full = self._rows_waiting(operation) >= self.max_batch_size
                if full or remaining <= 0 or self._expected == 0:
                    break
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take(operation)
            if batch:
                await self._execute(operation, batch)

    def _take(self, operation: Operation) -> list[_Job]:
        waiting = self._waiting[operation]
        batch: list[_Job] = []
        rows = 0
        while waiting and rows + waiting[0].size <= self.max_batch_size:
            job = waiting.popleft()
            self._queued_rows -= job.size
            if job.future.cancelled():
                continue
            batch.append(job)
            rows += job.size
        self.metrics.queue_depth.set(self._queued_rows)
        return batch

    async def _execute(self, operation: Operation, batch: list[_Job]) -> None:
        started = time.perf_counter()
        for job in batch:
            self.metrics.queue_wait.labels(operation).observe(started - job.enqueued)
        inputs = torch.cat([job.rows for job in batch])
        self.metrics.batch_size.labels(operation).observe(len(inputs))
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self.runner, operation, inputs)
        except Exception as exc:  # a failed forward fails exactly the requests in it
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self.metrics.forward_seconds.labels(operation).observe(time.perf_counter() - started)
        offset = 0
        for job in batch:
            end = offset + job.size
            if not job.future.done():
                job.future.set_result(tuple(output[offset:end] for output in outputs))
            offset = end
