"""benchmarks/attacks.py runs end to end on two quick attacks (the full run is a benchmark, not a
test), and its docs section replaces itself in docs/benchmarks.md without touching the rest."""

from __future__ import annotations

from benchmarks.attacks import main
from benchmarks.harness import ATTACKS_HEADING, markdown_section, with_markdown_section


def test_two_quick_attacks_run_against_a_real_server(capsys):
    assert main(["--only", "HEAD /health/live", "evil.example"]) == 0
    out = capsys.readouterr().out
    assert "| HEAD /health/live | 200, 0 B |" in out
    assert "| GET /model/ with Host: evil.example | 404, " in out
    assert "2 attacks in " in out and "all met their targets" in out


def test_the_attacks_section_is_replaced_in_place_or_added():
    old = f"# Benchmarks\n\n## Machine\n\nx\n\n{ATTACKS_HEADING}\n\nold table\n\n## Later\n\ny\n"
    new = f"{ATTACKS_HEADING}\n\nnew table\n"
    replaced = with_markdown_section(old, ATTACKS_HEADING, new)
    assert replaced == f"# Benchmarks\n\n## Machine\n\nx\n\n{new}\n## Later\n\ny\n"
    assert markdown_section(replaced, ATTACKS_HEADING) == new
    added = with_markdown_section("# Benchmarks\n\n## Machine\n\nx\n", ATTACKS_HEADING, new)
    assert added == f"# Benchmarks\n\n## Machine\n\nx\n\n{new}"
    assert with_markdown_section(added, ATTACKS_HEADING, new) == added
