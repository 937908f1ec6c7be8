"""Issue 15's attacks against the real service and the real command-line tools, each measured.

Run from the repository root on an otherwise idle machine::

    python benchmarks/attacks.py                  # everything, about 2 minutes on 2 cores
    python benchmarks/attacks.py --list           # the attacks' names
    python benchmarks/attacks.py --only head-live host-redirect
    python benchmarks/attacks.py --write-docs     # also docs/benchmarks.md's "Attacks" section

Service attacks (items 1 to 4 and 9) go one after another to one `python -m service` (what
`vaegan-serve` runs) in a subprocess, on the bundled demo model with the default settings. For
each: the answer (status and body size), the time from sending to the whole answer, the
server's peak memory growth (its VmHWM, reset before the attack, over its VmRSS before) and
the slowest of the /health/live probes sent every 20 ms meanwhile. One connection that sends
nothing is held open from the start, to see when the server closes it.

Process attacks (items 5 to 8) run `vaegan-serve --checkpoint` on hostile checkpoints built
from the demo model, and `vaegan-train edit --image` on /dev/zero and a FIFO, as real
processes: exit status, first line of stderr, wall time and peak RSS, each set against the
same command refusing a missing file (interpreter start-up and imports, which every refusal
pays).

Targets (the issue's, on a 2-core machine): every attack answered within 2 s (a legitimate
40 MP photo within 1 s), peak growth under 300 MB, /health/live never slower than 1 s, and
a refused checkpoint or image costing well under a second over the baseline. Exits 1 when an
attack misses a target or gets an answer other than the one expected.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import pytest

from benchmarks.attack_tools import (
    Watch,
    connect,
    json_flood,
    read_until_closed,
    reset_peak,
    send_huge_header,
    slowloris,
    watched,
)
from benchmarks.harness import (
    ATTACKS_HEADING,
    ROOT,
    Server,
    announce,
    face_jpeg,
    free_port,
    git_revision,
    with_markdown_section,
)
from model.demo import demo_checkpoint_path
from service.settings import ServiceSettings
from tests.checkpoint_variants import HOSTILE
from tests.processes import (
    Finished,
    as_unprivileged_user,
    folder_anyone_can_enter,
    run_measured,
)
from tests.service.hostile.make_corpus import LARGE

HOSTILE_FILES = ROOT / "tests" / "service" / "hostile"
DEFAULTS = ServiceSettings()

ANSWER_WITHIN_S = 2.0
PHOTO_WITHIN_S = 1.0
PEAK_GROWTH_MB = 300.0
LIVE_WITHIN_S = 1.0
REFUSAL_EXTRA_S = 1.0  # a refused file's cost over the same command refusing a missing one
MIB = 1.048576  # MB in a MiB: /proc and getrusage count KiB, the table says MB
PROCESS_TIMEOUT_S = 60.0  # a hostile checkpoint that is accepted starts a server: stopped here


@dataclass
class Row:
    attack: str
    answer: str
    seconds: float | None = None
    growth_mb: float | None = None
    worst_live_s: float | None = None
    within_s: float | None = ANSWER_WITHIN_S  # the time target, where one applies
    extra_s: float | None = None  # processes: the time over the baseline's
    peak_mb: float | None = None  # processes: the peak the growth is part of
    problems: list[str] = field(default_factory=list)  # targets missed, answers unexpected

    def judge(self) -> Row:
        spent = self.extra_s if self.extra_s is not None else self.seconds
        if spent is not None and self.within_s is not None and spent > self.within_s:
            self.problems.append(f"time {spent:.2f} s > {self.within_s:g} s")
        if self.growth_mb is not None and self.growth_mb > PEAK_GROWTH_MB:
            self.problems.append(f"peak growth {self.growth_mb:.0f} MB > {PEAK_GROWTH_MB:g} MB")
        if self.worst_live_s is not None and self.worst_live_s > LIVE_WITHIN_S:
            self.problems.append(f"/health/live {self.worst_live_s:.2f} s > {LIVE_WITHIN_S:g} s")
        return self

    def cells(self) -> list[str]:
        time_cell = "—" if self.seconds is None else f"{self.seconds:.2f} s"
        if self.extra_s is not None:
            time_cell += f" ({self.extra_s:+.2f})"
        growth = "—" if self.growth_mb is None else f"{round(self.growth_mb) or 0:+d} MB"
        if self.peak_mb is not None:
            growth += f" (peak {self.peak_mb:.0f})"
        live = "—" if self.worst_live_s is None else f"{self.worst_live_s * 1000:.0f} ms"
        answer = self.answer.replace("|", "\\|")
        if self.problems:
            answer += " **MISS: " + "; ".join(self.problems) + "**"
        return [self.attack, answer, time_cell, growth, live]


# --------------------------------------------------------------------------------------------
# service attacks


@dataclass
class Target:
    """The running server, and what the attacks send."""

    server: Server
    face: bytes

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class ServiceAttack:
    name: str
    run: Callable[[Target], Row]


def hostile_file(name: str) -> bytes:
    return (HOSTILE_FILES / name).read_bytes()


@contextmanager
def watching(target: Target) -> Iterator[Watch]:
    if not reset_peak(target.server.pid):
        raise SystemExit("cannot reset the server's peak memory (/proc/PID/clear_refs) here")
    with watched(target.url, target.server.pid) as watch:
        yield watch


def request(
    name: str,
    method: str,
    path: str,
    expect: int,
    build: Callable[[Target], dict[str, Any]],
    *,
    within_s: float = ANSWER_WITHIN_S,
    check: Callable[[httpx.Response], str | None] | None = None,
) -> ServiceAttack:
    """One request built by `build` (before the clock starts), answered with `expect`."""

    def run(target: Target) -> Row:
        options = build(target)
        with (
            httpx.Client(base_url=target.url, timeout=300) as client,
            watching(target) as watch,
        ):
            response = client.request(method, path, **options)
        answer = f"{response.status_code}, {len(response.content):,} B"
        row = Row(
            name, answer, watch.seconds, watch.peak_growth_mb * MIB, watch.worst_live_s, within_s
        )
        if response.status_code != expect:
            row.problems.append(f"expected {expect}: {response.text[:200]}")
        if watch.live_failures:
            row.problems.append(f"{watch.live_failures} /health/live probes failed")
        problem = check(response) if check is not None else None
        if problem:
            row.problems.append(problem)
        return row

    return ServiceAttack(name, run)


def json_body(path: str, count: int) -> Callable[[Target], dict[str, Any]]:
    return lambda _: {
        "content": json_flood(path, count),
        "headers": {"content-type": "application/json"},
    }


def chunked(body: Callable[[Target], dict[str, Any]]) -> Callable[[Target], dict[str, Any]]:
    """The same body sent in chunks, without a Content-Length to refuse it by."""

    def build(target: Target) -> dict[str, Any]:
        options = body(target)
        data: bytes = options["content"]
        pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        return options | {"content": iter(pieces)}

    return build


def upload(
    field_name: str, *files: tuple[str, Callable[[], bytes]]
) -> Callable[[Target], dict[str, Any]]:
    return lambda _: {"files": [(field_name, (name, data())) for name, data in files]}


def corpus_upload(name: str) -> Callable[[Target], dict[str, Any]]:
    return upload("image", (name, lambda: hostile_file(name)))


def large_upload(name: str) -> Callable[[Target], dict[str, Any]]:
    return upload("image", (name, LARGE[name]))


def no_location(response: httpx.Response) -> str | None:
    return "a Location header" if "location" in response.headers else None


def empty_body(response: httpx.Response) -> str | None:
    return "HEAD answered with a body" if response.content else None


def huge_header(target: Target) -> Row:
    with watching(target) as watch, connect(target.url) as sock:
        sent = send_huge_header(sock, 50_000_000)
        answer, _ = read_until_closed(sock, 10)
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "none"
    row = Row(
        "50 MB header line",
        f"{status} after {sent / 1e6:.1f} MB sent (limit {DEFAULTS.max_header_bytes:,} B)",
        watch.seconds,
        watch.peak_growth_mb * MIB,
        watch.worst_live_s,
    )
    if status != "431":
        row.problems.append(f"expected 431, got {answer[:80]!r}")
    return row


SLOWLORIS_CLIENTS = 8
SLOWLORIS = f"slowloris, {SLOWLORIS_CLIENTS} clients, a byte every 0.2 s"


def slowloris_attack(target: Target) -> Row:
    statuses: Counter[int] = Counter()

    def reconstruct(client: httpx.Client) -> None:
        response = client.post("/reconstruct", files={"image": ("face.jpg", target.face)})
        statuses[response.status_code] += 1

    cut_within = DEFAULTS.header_timeout_s + 1  # the deadline and a little
    with watching(target) as watch:
        result = slowloris(
            target.url,
            SLOWLORIS_CLIENTS,
            reconstruct,
            every_s=0.2,
            stop_after_s=DEFAULTS.header_timeout_s + 20,
        )
    cut = [
        answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "none"
        for answer, _ in result.answers
    ]
    served = ", ".join(f"{status} x{count}" for status, count in sorted(statuses.items()))
    times = [took for _, took in result.answers]
    answer = (
        f"{'/'.join(sorted(set(cut)))} x{len(cut)} after {min(times):.1f}-{max(times):.1f} s "
        f"(header_timeout_s {DEFAULTS.header_timeout_s:g}); /reconstruct meanwhile: {served}, "
        f"slowest {max(result.served) * 1000:.0f} ms"
    )
    row = Row(
        SLOWLORIS,
        answer,
        watch.seconds,
        watch.peak_growth_mb * MIB,
        watch.worst_live_s,
        within_s=cut_within,
    )
    if set(cut) != {"408"} or set(statuses) != {200}:
        row.problems.append("expected every slow client cut with 408 and every /reconstruct 200")
    if max(result.served) > ANSWER_WITHIN_S:
        row.problems.append(f"a /reconstruct meanwhile took {max(result.served):.2f} s")
    return row


class IdleSocket:
    """A connection that sends nothing, opened before the other attacks, and when the server
    closes it (by default after keep_alive_timeout_s, 75 s: long enough to run alongside)."""

    def __init__(self, url: str) -> None:
        self.limit_s = DEFAULTS.keep_alive_timeout_s + 30
        self.result: tuple[bytes, float] | None = None
        self._sock = connect(url)
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        with self._sock:
            self.result = read_until_closed(self._sock, self.limit_s)

    def row(self) -> Row:
        self._thread.join()
        assert self.result is not None
        received, waited = self.result
        closed = waited < self.limit_s
        row = Row(
            IDLE,
            (f"closed after {waited:.1f} s" if closed else f"still open after {waited:.0f} s")
            + f" (keep_alive_timeout_s {DEFAULTS.keep_alive_timeout_s})"
            + (f", sent {len(received)} B" if received else ""),
            waited,
            within_s=DEFAULTS.keep_alive_timeout_s + 1,
        )
        if not closed or received:
            row.problems.append("expected a silent close at the keep-alive timeout")
        return row


def repeated_field(target: Target) -> dict[str, Any]:
    return {"files": [("image", ("a.jpg", target.face)), ("image", ("b.jpg", target.face))]}


def strength_form(target: Target) -> dict[str, Any]:
    data = {"attribute": "Smiling", "strength": "1", "strengths": "-1,1"}
    return {"files": {"image": ("face.jpg", target.face)}, "data": data}


STRENGTH_JSON = {"latent": [0.0] * 128, "attribute": "Smiling", "strength": 1, "strengths": [-1, 1]}

# 40 MP pictures in the modes that used to cost seconds and a gigabyte, each alone, with WebP
# at its own 12 MP limit and the bombs refused from their headers.
HEAVY_40MP = [
    ("gray16-40mp.png", 200),
    ("palette-alpha-40mp.png", 200),
    ("float32-40mp.tif", 200),
    ("lossless-40mp.webp", 413),  # over WebP's own limit: refused from its header
    ("lossless-12mp.webp", 200),
    ("scan-bomb.jpg", 413),
    ("bomb-45mp.png", 413),
]
# Megabytes of structure, each refused from a count (built before the attack, not kept).
LARGE_UPLOADS = [
    ("png-many-chunks.png", 413),
    ("jpeg-many-segments.jpg", 413),
    ("jpeg-stray-bytes.jpg", 413),
    ("gif-many-blocks.gif", 413),
    ("tiff-many-tiles.tif", 413),
    ("bmp-many-runs.bmp", 415),
    ("scan-bomb-40mp.jpg", 413),
]

SERVICE_ATTACKS: list[ServiceAttack] = [
    # 1. bodies whose errors would be larger than they are
    *[
        request(f"{path} null flood, 10 MB", "POST", path, 413, json_body(path, 2_000_000))
        for path in ("/decode", "/attribute-edit", "/interpolate")
    ],
    request(
        "/decode null flood, 10 MB, chunked",
        "POST",
        "/decode",
        413,
        chunked(json_body("/decode", 2_000_000)),
    ),
    request("/decode null flood, 500 KB", "POST", "/decode", 413, json_body("/decode", 100_000)),
    request("/decode null flood, 45 KB", "POST", "/decode", 422, json_body("/decode", 9_000)),
    # 2. decoding cost
    request(
        "/encode, 16 float32 40 MP TIFFs",
        "POST",
        "/encode",
        413,
        upload(
            "image", *[(f"{i}.tif", lambda: hostile_file("float32-40mp.tif")) for i in range(16)]
        ),
    ),
    *[
        request(f"/reconstruct {name}", "POST", "/reconstruct", status, corpus_upload(name))
        for name, status in HEAVY_40MP
    ],
    *[
        request(f"/reconstruct {name}", "POST", "/reconstruct", status, large_upload(name))
        for name, status in LARGE_UPLOADS
    ],
    request(
        "/reconstruct 40 MP photo, JPEG q90 (legitimate)",
        "POST",
        "/reconstruct",
        200,
        large_upload("photo-40mp.jpg"),
        within_s=PHOTO_WITHIN_S,
    ),
    request(
        "/reconstruct 40 MP photo, progressive JPEG q90 (legitimate)",
        "POST",
        "/reconstruct",
        200,
        large_upload("photo-40mp-progressive.jpg"),
    ),
    request(
        "/similarity, two 40 MP pictures (within the pixel budget)",
        "POST",
        "/similarity",
        200,
        lambda _: {
            "files": [
                ("image_a", ("a.png", hostile_file("gray16-40mp.png"))),
                ("image_b", ("b.tif", hostile_file("float32-40mp.tif"))),
            ]
        },
    ),
    # 3. containers that decode in open()
    *[
        request(f"/reconstruct {name}", "POST", "/reconstruct", 415, corpus_upload(name))
        for name in ("ico-hiding-12000.ico", "icns-hiding-12000.icns")
    ],
    # 4. the connection
    ServiceAttack("50 MB header line", huge_header),
    ServiceAttack(SLOWLORIS, slowloris_attack),
    # 9. smaller holes
    request("HEAD /health/live", "HEAD", "/health/live", 200, lambda _: {}, check=empty_body),
    request(
        "GET /model/ with Host: evil.example",
        "GET",
        "/model/",
        404,
        lambda _: {"headers": {"host": "evil.example"}},
        check=no_location,
    ),
    request("strength + strengths, form", "POST", "/attribute-edit", 422, strength_form),
    request(
        "strength + strengths, JSON",
        "POST",
        "/attribute-edit",
        422,
        lambda _: {"json": STRENGTH_JSON},
    ),
    request("two image fields to /reconstruct", "POST", "/reconstruct", 422, repeated_field),
]
IDLE = "idle connection (sends nothing)"


# --------------------------------------------------------------------------------------------
# process attacks


@dataclass
class ProcessAttack:
    name: str
    tool: str  # "serve" or "edit": which baseline it is set against
    run: Callable[[Path], Finished | str]  # in a scratch folder; a str: why it could not run


def serve_command(checkpoint: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "vaegan-serve"),
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
        "--port",
        str(free_port()),
    ]


def edit_command(image: Path, folder: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "vaegan-train"),
        "edit",
        "--checkpoint",
        str(demo_checkpoint_path()),
        "--image",
        str(image),
        "--attribute",
        "Smiling",
        "--out",
        str(folder / "edit-out"),
    ]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def measure_process(command: list[str], folder: Path) -> Finished:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
    return run_measured(command, timeout=PROCESS_TIMEOUT_S, env=env, cwd=folder)


def hostile_checkpoint(name: str) -> Callable[[Path], Finished]:
    def run(folder: Path) -> Finished:
        path = HOSTILE[name](demo_checkpoint_path(), folder / f"{slug(name)}.safetensors")
        return measure_process(serve_command(path), folder)

    return run


def unreadable_checkpoint(folder: Path) -> Finished | str:
    """vaegan-serve on a mode-000 copy of the demo model, as a user file modes apply to (the
    service's Docker image runs as one); a reason when no such user can be had."""
    with folder_anyone_can_enter() as shared:
        locked = shared / "locked.safetensors"
        shutil.copyfile(demo_checkpoint_path(), locked)
        locked.chmod(0)
        try:
            command = as_unprivileged_user(serve_command(locked))
        except pytest.skip.Exception as skipped:
            return str(skipped)
        return measure_process(command, shared)


def edit_image(image: Path) -> Callable[[Path], Finished]:
    return lambda folder: measure_process(edit_command(image, folder), folder)


def edit_fifo(folder: Path) -> Finished:
    image = folder / "face.jpg"
    os.mkfifo(image)
    return measure_process(edit_command(image, folder), folder)


PROCESS_ATTACKS: list[ProcessAttack] = [
    *[
        ProcessAttack(f"vaegan-serve: {name}", "serve", hostile_checkpoint(name))
        for name in HOSTILE
    ],
    ProcessAttack(
        "vaegan-serve: checkpoint of mode 000 (as nobody)", "serve", unreadable_checkpoint
    ),
    ProcessAttack("vaegan-train edit --image /dev/zero", "edit", edit_image(Path("/dev/zero"))),
    ProcessAttack("vaegan-train edit --image FIFO", "edit", edit_fifo),
]
BASELINES: dict[str, Callable[[Path], list[str]]] = {
    "serve": lambda folder: serve_command(folder / "missing.safetensors"),
    "edit": lambda folder: edit_command(folder / "missing.jpg", folder),
}


@dataclass
class Baseline:
    """The same command refusing a missing file: the median of BASELINE_RUNS runs, since one
    start-up of the interpreter varies by tenths of a second."""

    seconds: float
    peak_mb: float
    line: str


BASELINE_RUNS = 3


def measure_baseline(tool: str, folder: Path) -> Baseline:
    runs = [measure_process(BASELINES[tool](folder), folder) for _ in range(BASELINE_RUNS)]
    return Baseline(
        statistics.median(run.seconds for run in runs),
        statistics.median(run.peak_mib * MIB for run in runs),
        runs[0].error_lines[0] if runs[0].error_lines else "",
    )


def process_row(attack: ProcessAttack, result: Finished, baseline: Baseline) -> Row:
    lines = result.error_lines
    first = lines[0] if lines else "(nothing on stderr)"
    if result.returncode is None:
        answer = f"still running at {PROCESS_TIMEOUT_S:g} s, killed; {first}"
    else:
        answer = f"exit {result.returncode}: {first}"
        if len(lines) > 1:
            answer += f" (+{len(lines) - 1} lines)"
    row = Row(
        attack.name,
        answer,
        result.seconds,
        result.peak_mib * MIB - baseline.peak_mb,
        within_s=REFUSAL_EXTRA_S,
        extra_s=result.seconds - baseline.seconds,
        peak_mb=result.peak_mib * MIB,
    )
    if result.returncode != 2 or len(lines) != 1:
        row.problems.append("expected exit 2 with one line")
    return row


def run_processes(attacks: list[ProcessAttack], work: Path, log: Callable[[Row], None]) -> None:
    baselines: dict[str, Baseline] = {}
    for attack in attacks:
        folder = Path(tempfile.mkdtemp(dir=work))
        if attack.tool not in baselines:
            baseline = baselines[attack.tool] = measure_baseline(attack.tool, folder)
            print(
                f"  baseline {attack.tool}: {baseline.seconds:.2f} s, peak "
                f"{baseline.peak_mb:.0f} MB: {baseline.line}",
                flush=True,
            )
        result = attack.run(folder)
        if isinstance(result, str):
            log(Row(attack.name, f"not run: {result}", within_s=None))
            continue
        row = process_row(attack, result, baselines[attack.tool])
        # Temporary folders say nothing to the reader of the table.
        row.answer = re.sub(r"/tmp/[\w.-]+(/[\w.-]+)*/", "", row.answer)
        log(row.judge())


# --------------------------------------------------------------------------------------------
# the report


HEADER = ["attack", "answer", "time", "peak growth", "worst /health/live"]


def table(rows: list[Row]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|"]
    return lines + ["| " + " | ".join(row.cells()) + " |" for row in rows]


def docs_section(
    command: str,
    started: datetime.datetime,
    minutes: float,
    machine_info: dict[str, str],
    service_rows: list[Row],
    process_rows: list[Row],
    server_note: str,
) -> str:
    described = ", ".join(f"{name} {value}" for name, value in machine_info.items())
    missed = [row for row in service_rows + process_rows if row.problems]
    lines = [
        ATTACKS_HEADING,
        "",
        f"Measured by `{command}` on {started:%Y-%m-%d} in {minutes:.1f} minutes, commit "
        f"{git_revision()}, on: {described}.",
        "",
        "Service attacks (items 1 to 4 and 9), one after another against one `python -m "
        "service` (what `vaegan-serve` runs) on the demo model with the default settings. "
        "Time: from sending the request to its whole answer. Peak growth: the server's VmHWM "
        "after the attack (reset through /proc/PID/clear_refs before it) over its VmRSS "
        "before. Worst /health/live: the slowest of the probes sent every 20 ms during the "
        "attack. Targets: within 2 s (the legitimate 40 MP photo within 1 s), under 300 MB, "
        "under 1 s. The slowloris and idle rows wait out the server's own deadlines "
        f"(header_timeout_s {DEFAULTS.header_timeout_s:g} s, keep_alive_timeout_s "
        f"{DEFAULTS.keep_alive_timeout_s} s by default) and are judged against those. "
        + server_note,
        "",
        *table(service_rows),
        "",
        "Process attacks (items 5 to 8), each a real process: `vaegan-serve --checkpoint` on "
        "a hostile variant of the demo model, `vaegan-train edit --image` on what is not a "
        "regular file. Time: wall time, and in brackets its difference from the same command "
        "refusing a missing file (interpreter start-up and imports); peak growth: the "
        "process's peak RSS over that baseline's. Target: under 1 s and 300 MB over the "
        "baseline, exit 2 with one line. The baseline is the median of "
        f"{BASELINE_RUNS} runs; differences of up to about a second either way are the "
        "start-up's own spread.",
        "",
        *table(process_rows),
        "",
        (
            "Every attack met its targets and got the answer expected."
            if not missed
            else "Missed: "
            + "; ".join(f"{row.attack}: {', '.join(row.problems)}" for row in missed)
        ),
        "",
    ]
    return "\n".join(lines)


def print_row(row: Row) -> None:
    time_cell, growth, live = row.cells()[2:]
    mark = "MISS " if row.problems else ""
    print(f"  {mark}{row.attack}: {row.answer} | {time_cell} | {growth} | {live}", flush=True)
    for problem in row.problems:
        print(f"    ! {problem}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the attacks' names and exit")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="WORDS",
        help="run only the attacks whose name contains one of these (case-insensitive)",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"replace (or add) the section '{ATTACKS_HEADING}' of docs/benchmarks.md",
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    names = [a.name for a in SERVICE_ATTACKS] + [IDLE] + [a.name for a in PROCESS_ATTACKS]
    if args.list:
        print("\n".join(names))
        return 0
    if args.only and args.write_docs:
        parser.error("--write-docs publishes a whole run: leave out --only")

    def chosen(name: str) -> bool:
        return not args.only or any(word.lower() in name.lower() for word in args.only)

    if not any(map(chosen, names)):
        parser.error(f"no attack matches {args.only}; see --list")

    command = shlex.join(["python", "benchmarks/attacks.py", *(argv or sys.argv[1:])])
    started = datetime.datetime.now()
    clock = time.monotonic()
    machine_info = announce(f"attacks: {command}")

    service_rows: list[Row] = []
    process_rows: list[Row] = []
    server_note = ""

    def logged(rows: list[Row]) -> Callable[[Row], None]:
        def log(row: Row) -> None:
            rows.append(row)
            print_row(row)

        return log

    with tempfile.TemporaryDirectory(prefix="attacks-") as tmp:
        work = Path(tmp)
        service_attacks = [a for a in SERVICE_ATTACKS if chosen(a.name)]
        process_attacks = [a for a in PROCESS_ATTACKS if chosen(a.name)]
        if service_attacks or chosen(IDLE):
            server = Server(demo_checkpoint_path(), {}, work / "server.log", {})
            try:
                server.wait_ready()
                target = Target(server, face_jpeg(0))
                ready_mb = (server.rss_kib() or 0) / 1024 * MIB
                server_note = f"The server's resident memory when ready: {ready_mb:.0f} MB."
                print(server_note)
                print(f"\nservice ({server.url}, pid {server.pid}):", flush=True)
                idle = IdleSocket(server.url) if chosen(IDLE) else None
                for attack in service_attacks:
                    logged(service_rows)(attack.run(target).judge())
                print("\nprocesses:", flush=True)
                # The idle connection is still waiting: run the processes meanwhile.
                run_processes(process_attacks, work, logged(process_rows))
                if idle is not None:
                    print(f"\nwaiting for the idle connection ({IDLE})...", flush=True)
                    logged(service_rows)(idle.row().judge())
            finally:
                server.stop()
        else:
            print("\nprocesses:", flush=True)
            run_processes(process_attacks, work, logged(process_rows))

    minutes = (time.monotonic() - clock) / 60
    for rows in (service_rows, process_rows):
        if rows:
            print("\n" + "\n".join(table(rows)))
    missed = [row for row in service_rows + process_rows if row.problems]
    print(f"\n{len(service_rows) + len(process_rows)} attacks in {minutes:.1f} minutes; ", end="")
    print("all met their targets" if not missed else f"{len(missed)} MISSED a target or answer")
    if args.write_docs:
        section = docs_section(
            command, started, minutes, machine_info, service_rows, process_rows, server_note
        )
        old = args.docs.read_text() if args.docs.is_file() else ""
        args.docs.write_text(with_markdown_section(old, ATTACKS_HEADING, section))
        print(f"wrote the section '{ATTACKS_HEADING}' of {args.docs}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
