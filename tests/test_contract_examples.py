"""Every python block of the product documentation runs, against real PostgreSQL, and does what its prose says.

The adapted blocks and their checks live in tests/contract_examples/ (one module per chapter), each
next to the spec's section title; tests/contract_examples/dataflow-auto-migration.md is the spec they
were adapted from. A check that needs what issue 10 is still building is an xfail (strict) naming it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contract_examples import (
    configuration,
    evolution,
    integration,
    production,
    quick_start,
    rollback,
    safety,
)
from tests.contract_examples.runner import SPEC, Example, Runner, original, spec_blocks
from tests.helpers import DatabasePool

EXAMPLES: list[Example] = [
    *quick_start.EXAMPLES,
    *configuration.EXAMPLES,
    *safety.EXAMPLES,
    *rollback.EXAMPLES,
    *evolution.EXAMPLES,
    *production.EXAMPLES,
    *integration.EXAMPLES,
]


def _cases() -> list[object]:
    cases = []
    for example in EXAMPLES:
        for check, missing in example.checks:
            marks = [pytest.mark.xfail(strict=True, reason=missing)] if missing else []
            cases.append(pytest.param(example, check, id=f"{example.anchor}: {check.__name__}", marks=marks))
    return cases


@pytest.fixture
async def runner(
    dsn: str,
    database_pool: DatabasePool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Runner]:
    taken: list[str] = []

    async def second_database() -> str:
        taken.append(await database_pool.take())
        return database_pool.dsn(taken[-1])

    monkeypatch.setenv("DATABASE_URL", dsn)  # `DataFlow()` in the docs finds the test database
    monkeypatch.chdir(tmp_path)  # files a block writes stay in the test's directory
    try:
        yield Runner(dsn, capsys, monkeypatch, tmp_path, second_database)
    finally:
        for name in taken:
            await database_pool.give_back(name)


@pytest.mark.parametrize(("example", "check"), _cases())
async def test_spec_block(runner: Runner, example: Example, check: object) -> None:
    await check(runner)  # type: ignore[operator]


def test_every_spec_block_is_adapted_and_recognisable() -> None:
    """One adapted block per python block of the spec, in the spec's order; each undoes to the spec's text."""
    blocks = spec_blocks()
    assert len(blocks) == 32
    assert [(b.section, b.index) for b in blocks] == [(e.section, e.index) for e in EXAMPLES]
    for block, example in zip(blocks, EXAMPLES, strict=True):
        assert original(example.code) == block.code.rstrip(), example.anchor
        assert example.checks, f"{example.anchor}: no check runs it"


def test_a_new_or_changed_block_in_the_spec_is_noticed() -> None:
    """The anchoring itself: a block added to a section, or an edited line, no longer matches."""
    text = SPEC.read_text()
    marker = "### Dry-Run Mode (Preview Only)\n"
    grown = text.replace(marker, marker + "\n```python\nawait db.auto_migrate(dry_run=True)\n```\n")
    assert len(spec_blocks(grown)) == len(spec_blocks()) + 1
    assert [b.index for b in spec_blocks(grown) if b.section == "Dry-Run Mode (Preview Only)"] == [0, 1]
    edited = spec_blocks(text.replace("dry_run=True)\n\nprint", "dry_run=False)\n\nprint"))
    dry = next(e for e in EXAMPLES if e.section == "Dry-Run Mode (Preview Only)")
    assert original(dry.code) != next(b.code for b in edited if b.section == dry.section)


def _shared_spec() -> Path | None:
    """The team's shared spec, when this checkout sits where the team keeps it (../shared or ../../shared)."""
    here = Path(__file__).resolve().parent.parent
    candidates = [os.environ.get("DATAFLOW_SPEC", "")] + [
        str(p / "shared" / "spec" / "dataflow-auto-migration.md") for p in (here.parent, here.parent.parent)
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def test_the_pinned_spec_is_the_shared_one() -> None:
    shared = _shared_spec()
    if shared is None:
        pytest.skip("the shared spec is not next to this checkout (set DATAFLOW_SPEC to check it)")
    assert SPEC.read_text() == shared.read_text(), f"{shared} changed: copy it to {SPEC} and adapt its blocks"
