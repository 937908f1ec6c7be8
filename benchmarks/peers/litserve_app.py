"""LitServe serving the same work, configured as its docs advise for throughput on a CPU: the
batching loop (max_batch_size 32, batch_timeout 5 ms: our service's defaults), `fast_queue`
(ZeroMQ between its API servers and inference workers), one API server per inference worker,
and each worker's torch threads an equal share of the cores.

    python -m benchmarks.peers.litserve_app --checkpoint model.safetensors --workers 2 --port 8000
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import litserve as ls
import torch
from fastapi import Response

from benchmarks.peers.work import ReconstructWork


class ReconstructAPI(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, checkpoint: Path, torch_threads: int) -> None:
        super().__init__(max_batch_size=32, batch_timeout=0.005, api_path="/reconstruct")
        self.checkpoint = checkpoint
        self.torch_threads = torch_threads

    def setup(self, device: str) -> None:
        self.work = ReconstructWork(self.checkpoint, self.torch_threads)

    # No annotation on `request`: LitServe reads it to choose how to parse the body, and a
    # string annotation (from __future__) would make it a query parameter.
    def decode_request(self, request) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return self.work.decode(request["image"].file.read())

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        return self.work.forward(batch)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, output: torch.Tensor) -> Response:
        return Response(self.work.png(output), media_type="image/png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    api = ReconstructAPI(args.checkpoint, max(1, cores // args.workers))
    server = ls.LitServer(
        api, accelerator="cpu", workers_per_device=args.workers, fast_queue=True, timeout=60
    )
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=args.workers,
        generate_client_file=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
