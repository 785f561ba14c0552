"""The models package stays plain Python: importing all of it loads no web framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import pkgutil, importlib, sys
import models
for module in pkgutil.iter_modules(models.__path__):
    importlib.import_module(f"models.{module.name}")
web = sorted(
    name for name in sys.modules
    if name.split(".")[0] in {"flask", "werkzeug", "gateway"} or name.startswith("flask_")
)
print(",".join(web))
"""


def test_importing_models_loads_no_web_code() -> None:
    # A fresh interpreter: this test session has Flask loaded already.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
