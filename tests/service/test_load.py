"""The short version of benchmarks/load_soak.py against a real `python -m service`: mixed load
with every answer checked, and an overload burst answered with 503 + Retry-After, after which
the server's latency returns to normal. The full version (20,000 requests at concurrency 64) runs
from `python benchmarks/load_soak.py` and `python benchmarks/run_all.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.harness import make_checkpoint
from benchmarks.load_soak import print_overload, print_soak, run_overload, run_soak

# One intra-op thread, as everywhere in the suite (tests/conftest.py): this is about
# correctness under concurrency, not speed, and the machine may be busy.
SERVER_ENV = {"VAEGAN_TORCH_THREADS": "1"}
# A short run on a shared machine: generous bounds, still far below a leak or a stuck queue.
RSS_GROWTH_BOUND = 0.25
RECOVERY_FACTOR = 3.0
RECOVERY_SLACK_MS = 25.0


@pytest.fixture(scope="module")
def distinct_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small64 with settled batch-norm statistics: unlike the suite's test checkpoint, its
    answers to different faces and seeds differ, so an answer swapped between two requests in a
    batch is caught."""
    return make_checkpoint(tmp_path_factory.mktemp("load-model"))


def test_mixed_load_gets_only_correct_answers_and_memory_stays_flat(
    distinct_model: Path, tmp_path: Path
) -> None:
    report = run_soak(distinct_model, tmp_path, requests=400, concurrency=16, server_env=SERVER_ENV)
    print_soak(report)
    assert report.failures == 0, report.failure_examples
    assert report.kinds == ["reconstruct", "sample", "attribute-edit", "encode"]
    # Each face's and seed's reference answer differs from the others' by more than the
    # tolerance, so "correct" means "this request's answer", not just "a face".
    assert report.indistinct_kinds == []
    assert all(summary.count == 100 for summary in report.by_kind.values())
    assert report.rss_samples >= 2
    assert report.rss_growth < RSS_GROWTH_BOUND, (
        f"{report.rss_first_quarter_mib:.1f} -> {report.rss_last_quarter_mib:.1f} MiB"
    )
    assert report.peak_rss_mib >= report.rss_last_quarter_mib


def test_overload_is_refused_with_retry_after_and_the_server_recovers(
    distinct_model: Path, tmp_path: Path
) -> None:
    report = run_overload(
        distinct_model,
        tmp_path,
        queue_size=4,
        concurrency=32,
        requests=320,
        probes=40,
        server_env=SERVER_ENV,
    )
    print_overload(report)
    assert report.rejected > 0, "the burst never filled the queue"
    assert report.accepted > 0
    # Every answer is a correct 200 or a 503 with a Retry-After; nothing else, no dropped
    # connections.
    assert report.failures == 0, report.failure_examples
    assert report.accepted + report.rejected == report.requests
    assert report.queue_rows_after == 0
    assert report.recovered(RECOVERY_FACTOR, RECOVERY_SLACK_MS), (
        f"p50 {report.before_p50_ms:.1f} ms before the burst, {report.after_p50_ms:.1f} after"
    )
