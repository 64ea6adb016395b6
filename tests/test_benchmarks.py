"""The benchmark script runs and prints its table. No timing is asserted:
the numbers belong to README.rst, not to pass/fail."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent


def test_quick_run_prints_every_section(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--no-e2e",
            "--no-redis",
            "--memory-deliveries",
            "2000",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout
    for row in (
        "floor (hmac.digest + TypeAdapter)",
        "SDK client.webhooks.unwrap",
        "standardwebhooks Webhook.verify",
        "ours, MemoryStore",
        "ours, SQLiteStore",
        "RSS after",
    ):
        assert row in table, row
    assert json.loads(out.read_text())
