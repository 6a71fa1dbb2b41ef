"""The processors' JSON payloads under tests/fixtures/<processor>/, read once and handed out as
fresh copies (tests may change what they get)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def payload(processor: str, name: str) -> dict[str, Any]:
    """A fresh copy of `tests/fixtures/<processor>/<name>.json`."""
    return copy.deepcopy(_load(processor, name))


@cache
def _load(processor: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / processor / f"{name}.json").read_text())
    return data
