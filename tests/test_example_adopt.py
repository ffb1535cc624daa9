"""examples/adopt runs end to end: import, empty plan, baseline, one change, history."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_adopt_example_runs_end_to_end(dsn: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "adopt" / "adopt.py"), "--database-url", dsn,
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    models = (tmp_path / "models.py").read_text()
    assert "class OrderStatus(enum.Enum):" in models and "@db.view\nclass OpenPurchase:" in models
    assert '"name": "customer_touch"' in models and '"name": "touch_updated_at"' in models
    assert "page_view" in out and "not managed (left alone)" in out  # the partitioned table, reported
    assert out.count("InSync: database matches the schema") == 2  # after import, and after the change
    assert "adopted customer, purchase, open_purchase (no DDL)" in out
    assert "│ customer │ ADD_COLUMN │ loyalty_points (BIGINT) │" in out
    assert "baseline: adopted 3 table(s) as they are" in out and "1 add column on customer" in out
