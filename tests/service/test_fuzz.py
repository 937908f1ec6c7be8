"""Schemathesis against the service's own OpenAPI schema, on a real uvicorn: every operation gets
valid and invalid requests, and every answer must be declared in the schema, conform to it and
never be a 5xx or hang.

The short run (CI) sends a few hundred requests. The long run sets VAEGAN_FUZZ_CASES, the total
number of generated cases spread over the operations (e.g. VAEGAN_FUZZ_CASES=20000), and then
draws new random cases each time instead of the fixed CI set.
"""

from __future__ import annotations

import copy
import io
import math
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from PIL import Image
from schemathesis.specs.openapi.checks import positive_data_acceptance

from model.config import get_preset
from service.app import create_app
from service.settings import ServiceSettings
from tests.service.conftest import ATTRIBUTES, RunningServer, start_server

LONG_RUN = "VAEGAN_FUZZ_CASES" in os.environ
TOTAL_CASES = int(os.environ.get("VAEGAN_FUZZ_CASES", "480"))
# A request that takes longer than this is a hung request: the slowest legitimate one here
# (64 samples on the test model) takes well under a second.
REQUEST_TIMEOUT_S = 20.0
LATENT = get_preset("small64").latent_dim  # of the checkpoint_path fixture's model

# The schema as the app builds it; test_the_fuzzed_schema_is_the_served_one checks that the live
# server's GET /openapi.json is exactly this document. Loading it here, at import, gives pytest
# one test per operation (schemathesis' fixture-based loader does not run on this pytest).
SPEC = create_app(ServiceSettings(checkpoint="unused.safetensors", device="cpu")).openapi()


def with_the_models_facts(spec: dict[str, Any]) -> dict[str, Any]:
    """The schema plus what only the loaded model knows (its latent size and attribute names),
    so that valid cases reach the model instead of all stopping at a 422 for the wrong size.
    The additions only narrow what counts as valid: invalid cases still use the served rules."""
    spec = copy.deepcopy(spec)
    latent = {"type": "array", "items": {"type": "number"}, "minItems": LATENT, "maxItems": LATENT}
    names = {"type": "string", "enum": list(ATTRIBUTES)}
    paths = spec["paths"]
    decode = paths["/decode"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    decode["properties"]["latents"].update(items=latent, minItems=1)
    edit = paths["/attribute-edit"]["post"]["requestBody"]["content"]
    edit["application/json"]["schema"]["properties"].update(
        latent=latent, attribute={"anyOf": [{"type": "array", "items": names}, names]}
    )
    edit["multipart/form-data"]["schema"]["properties"]["attribute"]["items"] = names
    walk = paths["/interpolate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    walk["properties"].update(latent_a=latent, latent_b=latent)
    return spec


schema = schemathesis.openapi.from_dict(with_the_models_facts(SPEC))
OPERATIONS = [
    f"{method.upper()} {path}" for path, methods in SPEC["paths"].items() for method in methods
]
# Operations without parameters or a body have only a few distinct requests; the total is
# spread over the others.
WITH_INPUTS = [
    f"{method.upper()} {path}"
    for path, methods in SPEC["paths"].items()
    for method, operation in methods.items()
    if operation.get("parameters") or operation.get("requestBody")
]
CASES_PER_OPERATION = max(1, math.ceil(TOTAL_CASES / len(WITH_INPUTS)))

# (operation, status) of every answer, for the summary test
answers: Counter[tuple[str, int]] = Counter()


# Multipart parts declared as image/* get real images as well as schemathesis' random bytes, so
# valid cases reach the model rather than stopping at the decoder.
@st.composite
def _images(draw: st.DrawFn, fmt: str) -> bytes:
    width = draw(st.integers(8, 96))
    height = draw(st.integers(max(8, width // 4), min(96, width * 4)))
    colour = draw(st.tuples(*[st.integers(0, 255)] * 3))
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return buffer.getvalue()


schemathesis.openapi.media_type("image/png", _images("PNG"))
schemathesis.openapi.media_type("image/jpeg", _images("JPEG"))


@pytest.fixture(scope="module")
def fuzz_server(checkpoint_path) -> Iterator[RunningServer]:
    running = start_server(
        checkpoint_path,
        max_batch_delay_ms=2,
        max_upload_bytes=256 * 1024,  # the fuzzer's bodies are small; a low limit keeps them so
        request_timeout_s=REQUEST_TIMEOUT_S / 2,
    )
    yield running
    running.stop()


@schema.parametrize()
@pytest.mark.timeout(max(300, CASES_PER_OPERATION))  # a long run's share of cases, at 1 s each
@hypothesis.settings(
    max_examples=CASES_PER_OPERATION,
    deadline=None,  # latency is the server's, on a shared CPU; hangs are caught by the timeout
    database=None,  # no example database: each run stands on its own
    derandomize=not LONG_RUN,  # CI sends the same cases each run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api(case, fuzz_server):
    response = case.call_and_validate(
        base_url=fuzz_server.url,
        timeout=REQUEST_TIMEOUT_S,
        # A schema cannot say that an upload must decode to a photo of a sensible size, that
        # strengths must pair with attributes or that a latent must fit in float32, so some
        # schema-valid requests are rightly refused with a declared 4xx. That valid requests are
        # served is test_endpoints.py's job; here they must only never be a 5xx.
        excluded_checks=[positive_data_acceptance],
    )
    answers[f"{case.method.upper()} {case.path}", response.status_code] += 1


def test_every_operation_was_fuzzed_and_the_server_is_healthy(fuzz_server):
    per_operation = Counter[str]()
    for (operation, status), count in sorted(answers.items()):
        per_operation[operation] += count
        print(f"{operation}: {count} x {status}")
    if not set(OPERATIONS) <= set(per_operation):
        pytest.skip("run the whole module to fuzz every operation")
    # Beside the declared operations, schemathesis also tries undeclared methods (405s).
    declared = sum(per_operation[operation] for operation in OPERATIONS)
    print(f"{declared} cases on {len(OPERATIONS)} operations, {per_operation.total()} in all")
    for operation in WITH_INPUTS:
        assert per_operation[operation] >= 0.9 * CASES_PER_OPERATION, operation
    # Valid requests reached the model, not only the validation in front of it. (Schemathesis
    # sends a generated image for /encode's array of files without a filename, so the server
    # rightly reads it as a text field: /encode's cases all end in a 4xx.)
    for operation in OPERATIONS:
        if operation.startswith("POST") and operation != "POST /encode":
            assert answers[operation, 200] > 0, operation
    assert httpx.get(f"{fuzz_server.url}/health/ready", timeout=5).status_code == 200


def test_the_fuzzed_schema_is_the_served_one(fuzz_server):
    served = httpx.get(f"{fuzz_server.url}/openapi.json", timeout=5).json()
    assert served == SPEC
