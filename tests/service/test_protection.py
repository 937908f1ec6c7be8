"""Limits, refusals, overload, auth and tracing, each over real HTTP."""

import asyncio
import io
import json
import logging
import re

import httpx
import pytest
from PIL import Image

from tests.service.conftest import image_bytes, start_server

FACE = image_bytes()


def _detail(response):
    return response.json()["detail"]


# --- bodies and images -------------------------------------------------------------------------


def test_declared_body_over_the_limit_is_413_without_reading_it(http):
    response = http.post(
        "/reconstruct",
        content=b"x" * 2_500_000,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 413
    assert "larger than the limit of 2,000,000 bytes" in _detail(response)


def test_streamed_body_over_the_limit_is_stopped_early(server, caplog):
    def body():
        # A well-formed multipart upload with no declared length: 100 MB if read to the end.
        yield (
            b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        for _ in range(100):
            yield b"\0" * 1_000_000

    with caplog.at_level(logging.INFO, logger="vaegan.access"), server.client() as client:
        try:
            response = client.post(
                "/reconstruct",
                content=body(),
                headers={
                    "content-type": "multipart/form-data; boundary=x",
                    "X-Request-ID": "big-upload",
                },
            )
            assert response.status_code == 413
            assert "larger than the limit" in _detail(response)
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server may close the connection once it has answered
    record = next(
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "vaegan.access" and "big-upload" in r.getMessage()
    )
    assert record["status"] == 413
    # The app stopped reading within one network chunk of the 2 MB limit, not at 100 MB.
    assert record["bytes_in"] < 2_000_000 + 1_100_000
    assert httpx.get(f"{server.url}/health/live").status_code == 200


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"", 400, "empty"),
        (b"definitely not an image", 415, "not an image in a supported format"),
        (image_bytes(fmt="PNG")[:200], 400, "truncated"),
        (image_bytes(size=(4, 4)), 422, "at least 8 pixels"),
        (image_bytes(size=(900, 60)), 422, "aspect ratio"),
    ],
)
def test_bad_images_get_a_clear_4xx(http, payload, status, message):
    response = http.post("/reconstruct", files={"image": ("x.png", payload, "image/png")})
    assert response.status_code == status
    assert message in _detail(response)


def test_decompression_bomb_is_refused_before_decoding(http):
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")  # 144 megapixels, tiny file
    response = http.post("/reconstruct", files={"image": buffer.getvalue()})
    assert response.status_code == 413
    assert "limit is 40,000,000 pixels" in _detail(response)


def test_wrong_field_name(http):
    response = http.post("/reconstruct", files={"picture": FACE})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image"]
    missing = http.post("/attribute-edit", files={"picture": FACE}, data={"attribute": "Smiling"})
    assert missing.status_code == 422
    assert "missing file field 'image'" in _detail(missing)


@pytest.mark.parametrize("n", [0, 65, -3])
def test_sample_count_out_of_range(http, n):
    response = http.post("/sample", params={"n": n})
    assert response.status_code == 422
    assert "n must be between 1 and 64" in _detail(response)


@pytest.mark.parametrize(
    ("latents", "message"),
    [
        ([[float("nan")] * 128], "NaN or infinite"),
        ([[float("inf")] * 128], "NaN or infinite"),
        ([[0.0] * 127], "has 127 values; this model's latents have 128"),
        ([], "empty"),
        ([[0.0] * 128] * 65, "limit is 64"),
    ],
)
def test_bad_latents(http, latents, message):
    # Python's json writes NaN and Infinity tokens, as many clients do; httpx's json= would refuse.
    response = http.post(
        "/decode",
        content=json.dumps({"latents": latents}),
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert message in _detail(response)


def test_non_json_decode_body(http):
    response = http.post(
        "/decode", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"attribute": "Smiling", "strength": "1e9"}, "outside [-10, 10]"),
        ({"attribute": "Smiling", "strength": "nan"}, "outside"),
        ({"attribute": "Smiling", "strengths": ",".join(["1"] * 40)}, "limit is 16"),
        ({"attribute": "Smiling", "strength": "lots"}, "strength must be numbers"),
        (
            {"attribute": ["Smiling", "Male"], "strength": ["1", "2", "3"]},
            "2 attributes but 3 strengths",
        ),
    ],
)
def test_bad_strengths(http, data, message):
    response = http.post("/attribute-edit", files={"image": FACE}, data=data)
    assert response.status_code == 422
    assert message in _detail(response)


def test_unknown_attribute_lists_the_known_ones(http):
    response = http.post("/attribute-edit", files={"image": FACE}, data={"attribute": "Smilling"})
    assert response.status_code == 422
    assert (
        _detail(response)
        == "unknown attribute 'Smilling'; this model knows: Smiling, Eyeglasses, Male"
    )


def test_image_and_latent_together_is_ambiguous(http):
    response = http.post("/attribute-edit", json={"latent": [0.0] * 128, "attribute": []})
    assert response.status_code == 422
    assert "name at least one attribute" in _detail(response)


def test_interpolation_steps_out_of_range(http):
    response = http.post(
        "/interpolate", json={"latent_a": [0.0] * 128, "latent_b": [0.0] * 128, "steps": 500}
    )
    assert response.status_code == 422
    assert "steps must be between 2 and 32" in _detail(response)


def test_wrong_content_type(http):
    response = http.post(
        "/attribute-edit", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415


# --- overload ----------------------------------------------------------------------------------


def test_queue_full_is_503_with_retry_after_and_the_server_keeps_serving(checkpoint_path):
    server = start_server(checkpoint_path, max_queue=2, max_batch_delay_ms=400)
    try:

        async def burst():
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                return await asyncio.gather(
                    *(client.post("/sample", params={"n": 2, "seed": i}) for i in range(6))
                )

        responses = asyncio.run(burst())
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses and 503 in statuses
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "1"
        assert "the server is busy" in _detail(busy)
        assert httpx.post(f"{server.url}/sample", params={"n": 1}).status_code == 200
    finally:
        server.stop()


def test_a_full_queue_refuses_uploads_before_decoding_them(checkpoint_path):
    server = start_server(checkpoint_path, max_queue=4)
    batcher = server.server.config.app.state.runtime.batcher
    try:
        with server.client() as client:
            garbage = {"image": ("x.png", b"not an image at all", "image/png")}
            assert client.post("/reconstruct", files=garbage).status_code == 415
            # Hold the queue full, as a burst of waiting requests would: the refusal must come
            # before the upload is decoded (a 503, not the 415 decoding would give).
            batcher._queued_rows = 4
            busy = client.post("/reconstruct", files=garbage)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            batcher._queued_rows = 0
            assert client.post("/reconstruct", files={"image": FACE}).status_code == 200
    finally:
        server.stop()


def test_a_request_over_its_time_is_504_and_the_server_keeps_serving(checkpoint_path):
    # 64 samples through batch-1 forwards take far longer than the 10 ms budget.
    server = start_server(checkpoint_path, request_timeout_s=0.01, max_batch_size=1)
    try:
        response = httpx.post(f"{server.url}/sample", params={"n": 64}, timeout=30)
        assert response.status_code == 504
        assert "longer than the 0.01 s limit" in _detail(response)
        assert httpx.get(f"{server.url}/health/ready").status_code == 200
        assert httpx.get(f"{server.url}/attributes").status_code == 200
    finally:
        server.stop()


# --- auth --------------------------------------------------------------------------------------


def test_api_key_protects_everything_but_health(checkpoint_path):
    server = start_server(checkpoint_path, api_key="s3cret-key")
    try:
        with server.client() as client:
            for method, path in [
                ("GET", "/attributes"),
                ("GET", "/model"),
                ("GET", "/metrics"),
                ("POST", "/sample"),
            ]:
                response = client.request(method, path)
                assert response.status_code == 401, path
                assert response.headers["www-authenticate"] == "Bearer"
                assert "Authorization: Bearer" in _detail(response)
            wrong = client.get("/attributes", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = client.get("/attributes", headers={"Authorization": "Bearer s3cret-key"})
            assert right.status_code == 200
            assert client.get("/health/live").status_code == 200
            assert client.get("/health/ready").status_code == 200
    finally:
        server.stop()


# --- tracing, metrics, concurrency -------------------------------------------------------------


def test_request_ids_are_echoed_or_made_and_logged_as_json(http, caplog):
    with caplog.at_level(logging.INFO, logger="vaegan.access"):
        given = http.get("/health/live", headers={"X-Request-ID": "trace-123"})
        made = http.get("/health/live")
        hostile = http.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
        refused = http.post("/reconstruct", files={"image": b"nope"})
    assert given.headers["x-request-id"] == "trace-123"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])
    assert refused.headers["x-request-id"]
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "vaegan.access"]
    by_id = {r["request_id"]: r for r in records}
    assert by_id["trace-123"]["status"] == 200 and by_id["trace-123"]["route"] == "/health/live"
    assert by_id[refused.headers["x-request-id"]]["status"] == 415


def _metric(text, name, **labels):
    pattern = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(pattern):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_64_concurrent_requests_are_answered_and_batched(server):
    uploads = [image_bytes(colour=(i * 3, 255 - i * 3, 90)) for i in range(64)]

    async def fire():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            before = (await client.get("/metrics")).text
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/reconstruct",
                        files={"image": data},
                        headers={"Accept": "application/json"},
                    )
                    for data in uploads
                )
            )
            after = (await client.get("/metrics")).text
            return before, responses, after

    before, responses, after = asyncio.run(fire())
    assert all(r.status_code == 200 for r in responses)
    # Each answer belongs to its own request: the latents match the image's own encoding.
    with httpx.Client(base_url=server.url) as client:
        for index in (0, 31, 63):
            own = client.post("/encode", files={"image": uploads[index]}).json()["mu"][0]
            answer = responses[index].json()["latents"][0]
            assert max(abs(a - b) for a, b in zip(own, answer, strict=True)) < 1e-4
    forwards = _metric(after, "vaegan_batch_size_count", operation="reconstruct") - _metric(
        before, "vaegan_batch_size_count", operation="reconstruct"
    )
    rows = _metric(after, "vaegan_batch_size_sum", operation="reconstruct") - _metric(
        before, "vaegan_batch_size_sum", operation="reconstruct"
    )
    assert rows == 64
    assert forwards < 64, "concurrent requests must share forward passes"
    assert (
        _metric(
            after,
            "vaegan_request_duration_seconds_count",
            method="POST",
            route="/reconstruct",
            status="200",
        )
        >= 64
    )
    assert "vaegan_requests_in_flight" in after
    assert "vaegan_model_info{" in after


def test_errors_are_counted_by_route_and_status(http):
    http.post("/decode", json={"latents": []})
    text = http.get("/metrics").text
    assert _metric(text, "vaegan_request_errors_total", route="/decode", status="422") >= 1
