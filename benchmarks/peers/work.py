"""The per-image work every peer does the same way: our codec's JPEG decode and preprocessing,
our predictor's reconstruct forward, our PNG encoder. Only the serving around it differs."""

from __future__ import annotations

from pathlib import Path

import torch

from model.checkpoint import load_checkpoint
from model.codec import encode_png, load_image_tensor
from service.predictor import Predictor


class ReconstructWork:
    def __init__(self, checkpoint: Path, torch_threads: int) -> None:
        torch.set_num_threads(torch_threads)
        self.predictor = Predictor(load_checkpoint(checkpoint), torch.device("cpu"))
        self.predictor.warm_up(8)

    def decode(self, upload: bytes) -> torch.Tensor:
        return load_image_tensor(upload, self.predictor.preprocessing)  # (C, S, S)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        images, _ = self.predictor.run("reconstruct", batch)
        return images  # (N, C, S, S)

    def png(self, image: torch.Tensor) -> bytes:
        return encode_png(image)

    def one(self, upload: bytes) -> bytes:
        return self.png(self.forward(self.decode(upload).unsqueeze(0))[0])
