"""vaegan's inference service: FastAPI over one micro-batched model. Imports `model`, never
`training`."""
