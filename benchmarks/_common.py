"""Helpers every benchmark script shares: the ``--json PATH`` flag and output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    return p


def report(figures: dict[str, Any], json_path: str | None) -> None:
    """Print the figures and, when asked, write them as JSON."""
    for name, value in figures.items():
        print(f"{name:>32}: {value:.6g}" if isinstance(value, float) else f"{name:>32}: {value}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {json_path}")
