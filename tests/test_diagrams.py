"""The committed diagrams are what the code draws, and they show every state, trigger and guard.

A reviewer reads diagrams/ instead of the tables; this test is what makes that safe.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from triplegain_fsm import diagrams
from triplegain_fsm.machines.order_machine import ORDER_TABLE
from triplegain_fsm.machines.position_machine import POSITION_TABLE

pytestmark = pytest.mark.unit

COMMITTED = Path(__file__).resolve().parent.parent / "diagrams"
needs_dot = pytest.mark.skipif(not diagrams.dot_available(), reason="graphviz's dot is not installed")


def test_committed_diagrams_match_the_code() -> None:
    stale = diagrams.check(COMMITTED)
    assert stale == [], f"diagrams/ is stale ({', '.join(stale)}): run `triplegain-fsm diagrams` and commit"


def test_text_outputs_are_always_compared() -> None:
    # Whatever the machine has installed, Mermaid, DOT and README are part of the check.
    expected = diagrams.expected_text_files()
    assert set(expected) == {"order.mmd", "position.mmd", "order.dot", "position.dot", "README.md"}
    for name, content in expected.items():
        assert (COMMITTED / name).read_bytes() == content, name


def test_generation_is_byte_identical_across_runs(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    diagrams.write(first)
    diagrams.write(second)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_check_reports_a_changed_and_a_missing_file(tmp_path: Path) -> None:
    diagrams.write(tmp_path)
    assert diagrams.check(tmp_path) == []
    (tmp_path / "order.mmd").write_text("stateDiagram-v2\n", encoding="utf-8")
    (tmp_path / "position.dot").unlink()
    assert sorted(diagrams.check(tmp_path)) == ["order.mmd", "position.dot"]


def test_write_rewrites_only_what_changed(tmp_path: Path) -> None:
    diagrams.write(tmp_path)
    (tmp_path / "README.md").write_text("edited by hand\n", encoding="utf-8")
    written, _ = diagrams.write(tmp_path)
    assert [p.name for p in written] == ["README.md"]


@pytest.mark.parametrize(("diagram", "table"), [(diagrams.DIAGRAMS[0], ORDER_TABLE),
                                                 (diagrams.DIAGRAMS[1], POSITION_TABLE)], ids=["order", "position"])
def test_every_state_trigger_and_guard_is_drawn(diagram: diagrams.Diagram, table: tuple) -> None:
    mermaid = diagrams.mermaid(diagram)
    dot = diagrams.dot(diagram)
    for state in diagram.kind.states:
        assert f'state "{state}" as {state}' in mermaid
        assert re.search(rf"^\s*{state} \[", dot, re.M), state
    for edge in table:
        for text in (mermaid, dot):
            assert edge.trigger in text
            for guard in edge.conditions:
                assert guard in text
            for guard in edge.unless:
                assert f"!{guard}" in text
    assert f"[*] --> {diagram.kind.machine.initial}" in mermaid
    for final in diagram.kind.final_states:
        assert f"{final} --> [*]" in mermaid


def test_guards_appear_as_labels() -> None:
    order = diagrams.mermaid(diagrams.DIAGRAMS[0])
    assert "OPEN --> FILLED: fill [fill_is_valid & fill_completes]" in order
    assert "OPEN --> PARTIALLY_FILLED: fill [fill_is_valid & !fill_completes]" in order
    assert "CANCEL_PENDING --> CANCEL_PENDING: fill [internal] [fill_is_valid & !fill_completes]" in order
    position = diagrams.mermaid(diagrams.DIAGRAMS[1])
    assert "UNPROTECTED --> PROTECTED: protected [legs_cover_size]" in position
    assert 'label="fill [fill_is_valid & fill_completes]"' in diagrams.dot(diagrams.DIAGRAMS[0])


def test_readme_embeds_both_diagrams_and_every_note() -> None:
    readme = diagrams.readme()
    blocks = re.findall(r"```mermaid\n(.*?)```", readme, re.S)
    assert blocks == [diagrams.mermaid(d) for d in diagrams.DIAGRAMS]
    for edge in (*ORDER_TABLE, *POSITION_TABLE):
        if edge.note:
            assert edge.note in readme
    # the order's notes come under the order diagram, the position's under the position diagram
    order_part, position_part = readme.split("## Position")
    assert ORDER_TABLE[0].note in order_part and POSITION_TABLE[0].note in position_part


def test_mermaid_front_matter_is_yaml_title() -> None:
    assert diagrams.mermaid(diagrams.DIAGRAMS[0]).startswith("---\ntitle: Order\n---\nstateDiagram-v2\n")


@needs_dot
def test_svg_renders_every_state(tmp_path: Path) -> None:
    svg = diagrams.svg(diagrams.DIAGRAMS[1]).decode("utf-8")
    assert svg.lstrip().startswith("<?xml")
    for state in diagrams.DIAGRAMS[1].kind.states:
        assert f">{state}</text>" in svg


def test_without_dot_the_svg_is_left_alone_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagrams, "dot_available", lambda: False)
    (tmp_path / "order.svg").write_bytes(b"<svg/>")
    written, warnings = diagrams.write(tmp_path)
    assert (tmp_path / "order.svg").read_bytes() == b"<svg/>"
    assert not any(p.suffix == ".svg" for p in written)
    assert warnings and "could not render" in warnings[0]
    assert diagrams.check(tmp_path) == []  # without dot, SVGs are not compared
    with pytest.raises(diagrams.DiagramError, match="apt-get install graphviz"):
        diagrams.svg(diagrams.DIAGRAMS[0])
