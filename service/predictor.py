"""The model as the service uses it: a checkpoint on a device, and batched forward operations.

Everything here runs on the micro-batcher's model thread; nothing touches the event loop.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from model.checkpoint import Checkpoint

# What one batched forward can do; the micro-batcher groups requests by it.
Operation = Literal["encode", "decode", "reconstruct", "features"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)


class Predictor:
    def __init__(self, checkpoint: Checkpoint, device: torch.device, *, half: bool = False) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = torch.float16 if half and device.type == "cuda" else torch.float32
        self.model = checkpoint.model.to(device=device, dtype=self.dtype).eval()
        # Channels-last convolutions are faster on CPUs and GPUs alike for these networks.
        self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.config = checkpoint.config
        self.preprocessing = checkpoint.preprocessing
        self.attributes = {
            name: attribute.vector.detach().to("cpu", torch.float32)
            for name, attribute in checkpoint.attributes.items()
        }

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        size = self.config.image_size
        return (self.config.channels, size, size)

    @torch.inference_mode()
    def run(self, operation: Operation, inputs: Tensor) -> tuple[Tensor, ...]:
        """One batched forward; outputs are float32 on the CPU, one row per input row."""
        x = inputs.to(self.device, self.dtype, non_blocking=True)
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        model = self.model
        if operation == "encode":
            encoded = model.encoder(x)
            return _cpu(encoded.mu), _cpu(encoded.logvar)
        if operation == "decode":
            return (_cpu(model.decoder(x)),)
        if operation == "reconstruct":
            mu = model.encoder(x).mu
            return _cpu(model.decoder(mu)), _cpu(mu)
        if operation == "features":
            return (_cpu(model.similarity_features(x).flatten(1)),)
        raise ValueError(f"unknown operation {operation!r}")

    def warm_up(self, batch_size: int) -> None:
        """Run every operation once at full batch size so first requests are not slow."""
        images = torch.zeros(batch_size, *self.image_shape)
        latents = torch.zeros(batch_size, self.latent_dim)
        for operation in OPERATIONS:
            if operation == "features" and not self.model.has_similarity_metric:
                continue
            self.run(operation, latents if operation == "decode" else images)


def _cpu(tensor: Tensor) -> Tensor:
    return tensor.float().cpu().contiguous()
