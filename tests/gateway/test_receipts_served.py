"""The README's partner-receipt example, run as a partner would: a separate Python process
with only the copied verifier file, talking HTTP to `predgate serve`; then the receipt it got,
checked offline with `predgate receipts verify`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from config import Settings
from tests.conftest import World, bearer
from tests.serving_support import start_serving

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [example] = [block for block in blocks if "verify_receipt" in block]
    return example


def test_the_readme_example_proves_an_answer_over_http(
    settings: Settings, world: World, tmp_path: Path, predgate: Callable[..., Any]
) -> None:
    server, base = start_serving(settings)
    try:
        key = requests.get(f"{base}/v1/log/public-key", headers=bearer(world.acme_key), timeout=10)
        assert key.status_code == 200
        partner = tmp_path / "partner"
        partner.mkdir()
        (partner / "audit.pem").write_text(key.json()["public_key"])
        (partner / "receipt_verifier.py").write_bytes(
            (ROOT / "audit/receipt_verifier.py").read_bytes()
        )
        (partner / "example.py").write_text(
            readme_example() + "\nimport json\njson.dump(receipt, open('receipt.json', 'w'))\n"
        )
        env = {**os.environ, "PREDGATE_URL": base, "PARTNER_KEY": world.acme_key}
        env.pop("PYTHONPATH", None)
        run = subprocess.run(
            [sys.executable, "example.py"],
            cwd=partner,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        header, proven = run.stdout.splitlines()
        assert re.fullmatch(r'seq=\d+, hash="[0-9a-f]{64}"', header)
        seq, status, version = proven.split()
        assert (status, version) == ("200", str(world.house_price.version))
        assert f"seq={seq}," in header
    finally:
        server.terminate()
        server.wait(timeout=30)

    # The partner's receipt, checked offline by the CLI: no database, no instance needed.
    receipt_file, pem = partner / "receipt.json", partner / "audit.pem"
    ok = predgate("receipts", "verify", str(receipt_file), "--public-key", str(pem))
    receipt = json.loads(receipt_file.read_text())
    assert ok.output.startswith(f"OK: request {receipt['record']['request_id']} answered 200")
    assert f"record seq {receipt['record']['seq']} is in the log" in ok.output
    receipt["record"]["http_status"] = 500
    receipt_file.write_text(json.dumps(receipt))
    failed = predgate("receipts", "verify", str(receipt_file), "--public-key", str(pem), ok=False)
    assert failed.exit_code == 1
    assert "record_altered" in failed.output
    failed = predgate("receipts", "verify", str(pem), "--public-key", str(pem), ok=False)
    assert failed.exit_code == 1
    assert "is not JSON" in failed.output
    assert "Traceback" not in failed.output
