"""Attacks that stay under every size limit, against a real uvicorn over real sockets: bodies
whose errors would balloon, huge and slow request heads, idle and slow connections, and the
small protocol holes (HEAD, the docs, slash redirects, repeated fields). Each must cost the
server little time and memory while /health/live keeps answering.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from benchmarks.attack_tools import (
    JSON_FLOODS,
    Watch,
    connect,
    json_flood,
    read_until_closed,
    reset_peak,
    send_huge_header,
    slowloris,
    trickle,
)
from benchmarks.attack_tools import watched as watched_anywhere
from tests.service.conftest import (
    RunningServer,
    image_bytes,
    start_server,
)

FACE = image_bytes()
LATENT = [0.0] * 128

# The targets on a 2-core machine.
ANSWER_WITHIN_S = 2.0
PEAK_GROWTH_MB = 300
LIVE_WITHIN_S = 1.0
SMALL_BODY = 4096


# --- measuring ---------------------------------------------------------------------------------


@contextmanager
def watched(url: str, pid: int | str = "self") -> Iterator[Watch]:
    """Time the block, probe /health/live every 20 ms meanwhile, and measure the server's peak
    memory growth (the tests' servers run in this process unless `pid` says otherwise)."""
    if not reset_peak(pid):
        pytest.skip("cannot reset the peak memory counter here")
    with watched_anywhere(url, pid) as watch:
        yield watch


def assert_cheap(watch: Watch) -> None:
    assert watch.seconds < ANSWER_WITHIN_S, watch
    assert watch.peak_growth_mb < PEAK_GROWTH_MB, watch
    assert watch.worst_live_s < LIVE_WITHIN_S, watch
    assert watch.live_failures == 0, watch


def assert_small_refusal(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, response.text[:300]
    assert len(response.content) < SMALL_BODY, len(response.content)
    assert response.headers["content-type"] == "application/json"


# --- 1. bodies whose errors would be bigger than they are ---------------------------------------


@pytest.mark.parametrize("path", sorted(JSON_FLOODS))
@pytest.mark.parametrize(
    ("count", "status"),
    [
        (1_900_000, 413),  # 9.5 MB, the attack: over the JSON byte limit
        (100_000, 413),  # 500 KB: under the byte limit, far over the values any request needs
        (9_000, 422),  # under both: validated, and refused at the first bad value
    ],
)
def test_a_flood_of_bad_values_gets_a_small_fast_answer(server, path, count, status):
    body = json_flood(path, count)
    with watched(server.url) as watch, server.client() as client:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert_small_refusal(response, status)
    assert_cheap(watch)
    detail = response.json()["detail"]
    if status == 422:
        assert detail.startswith("invalid JSON body: ") and detail.count("valid number") == 1


def test_nested_rows_are_counted_as_values(http):
    # 100,000 one-value rows: few bytes each, but each a list for the parser to build.
    body = '{"latents": [' + ",".join(["[0]"] * 100_000) + "]}"
    response = http.post("/decode", content=body, headers={"content-type": "application/json"})
    assert_small_refusal(response, 413)
    assert "holds over 9,280 values" in response.json()["detail"]
    assert "at most 64 latents of 128" in response.json()["detail"]


def test_the_largest_legitimate_json_body_is_served(http):
    # 64 latents written with every digit, pretty-printed: what the value limit must allow.
    latents = [[-0.12345678901234567] * 128] * 64
    body = json.dumps({"latents": latents}, indent=2)
    assert len(body) > 200_000
    response = http.post("/decode", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200


def test_fastapis_own_validation_errors_are_cut_short(server):
    # /encode declares its files to FastAPI: 1,000 text parts named `image`, each 1 KB, are
    # 1,000 problems, each of which FastAPI would answer with the 1 KB it got.
    fields = [("image", (None, "x" * 1000))] * 1000  # no file name: a text part
    with watched(server.url) as watch, server.client() as client:
        response = client.post("/encode", files=fields)
    assert_small_refusal(response, 422)
    assert_cheap(watch)
    detail = response.json()["detail"]
    assert len(detail) == 6 and detail[-1]["msg"] == "and 995 more problems"
    assert detail[0]["loc"] == ["body", "image", 0] and "input" not in detail[0]


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        ({"attribute": "Smiling," * 100_000}, 400, "exceeded maximum size of 16KB"),
        ({"attribute": "Smiling," * 1000}, 422, "1001 attributes sent; the limit is 16"),
        ({"attribute": "Smiling", "strengths": "1," * 5000}, 422, "the limit is 16"),
        ({"attribute": "Smiling", "strength": "x" * 10_000}, 422, "strength must be numbers"),
    ],
)
def test_form_fields_are_bounded_before_they_are_parsed(server, data, status, words):
    with watched(server.url) as watch, server.client() as client:
        response = client.post("/attribute-edit", files={"image": FACE}, data=data)
    assert_small_refusal(response, status)
    assert words in response.json()["detail"]
    assert_cheap(watch)


def test_thousands_of_repeated_query_parameters_are_refused_fast(server):
    query = "&".join(f"{i}=1&{i}=2" for i in range(2000))  # 26 KB, under the head limit
    with watched(server.url) as watch, server.client() as client:
        response = client.post(f"/sample?{query}")
    assert_small_refusal(response, 422)
    assert "given more than once; send it once" in response.json()["detail"]
    assert_cheap(watch)


def test_json_with_the_wrong_type_is_415(http):
    response = http.post(
        "/decode", content=b'{"latents": [[0]]}', headers={"content-type": "text/plain"}
    )
    assert_small_refusal(response, 415)
    assert "application/json" in response.json()["detail"]


# --- 4. the connection: request heads, idle and slow clients ------------------------------------

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def strict_server(checkpoint_path) -> Iterator[RunningServer]:
    running = start_server(
        checkpoint_path,
        max_batch_delay_ms=2,
        keep_alive_timeout_s=1,
        header_timeout_s=TIMEOUT_S,
        body_timeout_s=TIMEOUT_S,
    )
    yield running
    running.stop()


def test_a_50_mb_header_is_431_after_a_few_kb(strict_server):
    with watched(strict_server.url) as watch, connect(strict_server.url) as sock:
        send_huge_header(sock, 50_000_000)
        answer, _ = read_until_closed(sock, 5)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b"larger than the limit of 32,768 bytes" in answer
    assert_cheap(watch)


def test_an_oversized_head_sent_at_once_gets_its_431(strict_server):
    with connect(strict_server.url) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n")
        answer, _ = read_until_closed(sock, 5)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    # A head under the limit is served as usual.
    headers = {f"x-h{i}": "v" * 100 for i in range(200)}  # 22 KB
    assert httpx.get(f"{strict_server.url}/health/live", headers=headers).status_code == 200


def test_slowloris_clients_are_cut_off_in_bounded_time_while_others_are_served(strict_server):
    def sample(client: httpx.Client) -> None:
        assert client.post("/sample", params={"n": 1}).status_code == 200

    with watched(strict_server.url) as watch:
        results = slowloris(strict_server.url, 4, sample, every_s=0.2, stop_after_s=10).answers
    assert len(results) == 4
    for answer, _ in results:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b"took longer than 1 s" in answer
    # Cut at the 1 s deadline (plus a send interval and a hang-up second), not after the 10 s
    # the whole head would take.
    assert watch.seconds < TIMEOUT_S + 2.5, watch
    assert watch.worst_live_s < LIVE_WITHIN_S, watch


def test_a_connection_that_sends_nothing_is_closed(strict_server):
    with connect(strict_server.url) as sock:
        answer, waited = read_until_closed(sock, 10)
    assert answer == b"" and 0.9 < waited < 2, waited


def test_an_idle_keep_alive_connection_is_closed(strict_server):
    with connect(strict_server.url) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answer, waited = read_until_closed(sock, 10)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"alive"}')
    assert 0.9 < waited < 2, waited


def test_a_slow_body_is_cut_off_in_bounded_time(strict_server):
    with connect(strict_server.url) as sock:
        sock.sendall(
            b"POST /decode HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n"
        )
        took = trickle(sock, b'{"latents": [' + b"0," * 500, 0.2, stop_after_s=10)
        answer, _ = read_until_closed(sock, 5)
    assert answer == b""  # closed: the app saw a disconnect, no one is left to answer
    assert took < TIMEOUT_S + 1, took
    assert httpx.get(f"{strict_server.url}/health/live").status_code == 200


def assert_connection_limits(url: str, keep_alive_s: float, header_s: float) -> None:
    """The connection settings hold on the server at `url` (test_cli.py checks the CLI's)."""
    with connect(url) as idle, connect(url) as slow:
        slow.sendall(b"GET /health/live HTTP/1.1\r\n")
        answer, waited = read_until_closed(slow, 10)
        assert answer.startswith(b"HTTP/1.1 408 ") and waited < header_s + 0.5, (answer, waited)
        answer, waited = read_until_closed(idle, 10)
        assert answer == b"" and waited < keep_alive_s + 0.5, waited
    assert httpx.get(f"{url}/health/live", headers={"x-big": "a" * 40_000}).status_code == 431


def test_the_connection_limits_hold(strict_server):
    assert_connection_limits(strict_server.url, keep_alive_s=1, header_s=TIMEOUT_S)


# --- 9. smaller holes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/health/live", "/health/ready", "/attributes", "/model", "/metrics", "/", "/openapi.json"],
)
def test_head_is_answered_wherever_get_is(http, path):
    get = http.get(path)
    head = http.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # the counters move between the two requests
        assert head.headers["content-length"] == get.headers["content-length"]


def test_head_is_not_a_way_into_post_routes(http):
    assert http.head("/sample").status_code == 405


@pytest.fixture(scope="module")
def keyed_servers(checkpoint_path) -> Iterator[dict[bool, RunningServer]]:
    servers = {
        protect: start_server(checkpoint_path, api_key="s3cret", protect_docs=protect)
        for protect in (True, False)
    }
    yield servers
    for running in servers.values():
        running.stop()


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_require_the_api_key_unless_published(keyed_servers, path):
    with keyed_servers[True].client() as client:
        refused = client.get(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        # Probes stay open, by HEAD as well.
        assert client.head("/health/ready").status_code == 200
    with keyed_servers[False].client() as client:
        assert client.get(path).status_code == 200
        assert client.get("/model").status_code == 401


def test_no_redirect_is_built_from_the_host_header(http):
    for path in ("/model/", "/health/live/", "/docs/"):
        response = http.get(path, headers={"Host": "evil.example"})
        assert response.status_code == 404, path
        assert "location" not in response.headers


def test_strength_and_strengths_together_are_refused(http):
    form = http.post(
        "/attribute-edit",
        files={"image": FACE},
        data={"attribute": "Smiling", "strength": "1", "strengths": "-1,1"},
    )
    body = {"latent": LATENT, "attribute": "Smiling", "strength": 1, "strengths": [-1, 1]}
    for response in (form, http.post("/attribute-edit", json=body)):
        assert_small_refusal(response, 422)
        assert (
            "'strength' (one image) or 'strengths' (a strip), not both" in response.json()["detail"]
        )


REPEATED: dict[str, Callable[[bytes], list[tuple[str, tuple[str, bytes]]]]] = {
    "/reconstruct": lambda face: [("image", ("a.png", face)), ("image", ("b.png", face))],
    "/attribute-edit": lambda face: [("image", ("a.png", face)), ("image", ("b.png", face))],
    "/similarity": lambda face: [
        ("image_a", ("a.png", face)),
        ("image_a", ("b.png", face)),
        ("image_b", ("c.png", face)),
    ],
    "/interpolate": lambda face: [
        ("image_a", ("a.png", face)),
        ("image_b", ("b.png", face)),
        ("image_b", ("c.png", face)),
    ],
}


@pytest.mark.parametrize("path", sorted(REPEATED))
def test_a_single_image_field_sent_twice_is_refused(http, path):
    data = {"attribute": "Smiling"} if path == "/attribute-edit" else None
    response = http.post(path, files=REPEATED[path](FACE), data=data)
    assert_small_refusal(response, 422)
    assert "sent more than once; send one file each" in response.json()["detail"]
