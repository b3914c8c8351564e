"""Tables (rich) and sizes for the CLI."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1e3,
    "KB": 1e3,
    "M": 1e6,
    "MB": 1e6,
    "G": 1e9,
    "GB": 1e9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "T": 1e12,
    "TB": 1e12,
    "TIB": 2**40,
}


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def parse_bytes(text: str) -> int:
    """``"500MB"``, ``"2G"``, ``"1.5GiB"`` or a plain number of bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 500MB, 2G, 1073741824)")
    return int(float(match.group(1)) * _UNITS[unit])


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A text table (rich's, plain: no colour, no wrapping); numbers are right-aligned."""
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]
    grid = Table(title=title or None, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for header, is_number in zip(headers, numeric, strict=True):
        grid.add_column(header, justify="right" if is_number else "left", no_wrap=True)
    for row in rows:
        grid.add_row(*[_cell(value) for value in row])
    console = Console(file=io.StringIO(), width=100_000, color_system=None, highlight=False)
    console.print(grid)
    lines = console.file.getvalue().splitlines()
    return "\n".join(line.rstrip() for line in lines if line.strip())


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
