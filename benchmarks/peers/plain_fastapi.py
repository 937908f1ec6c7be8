"""A plain FastAPI app as its docs teach: a sync endpoint (run on Starlette's thread pool) that
does one image's work per request, no batching. Scale it with `uvicorn --workers N`:

    PEER_CHECKPOINT=model.safetensors PEER_TORCH_THREADS=1 \
        uvicorn benchmarks.peers.plain_fastapi:app --workers 2 --port 8000
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Response, UploadFile

from benchmarks.peers.work import ReconstructWork

work = ReconstructWork(
    Path(os.environ["PEER_CHECKPOINT"]), int(os.environ.get("PEER_TORCH_THREADS", "1"))
)
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/reconstruct")
def reconstruct(image: Annotated[UploadFile, File()]) -> Response:
    return Response(work.one(image.file.read()), media_type="image/png")
