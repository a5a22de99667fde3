"""How every ``llmsight bench`` command reports: a rich table for people, then, with ``--json``,
one JSON line of figures as the last line of output."""

from __future__ import annotations

import json
from typing import Any


def emit(title: str, figures: dict[str, Any], as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in _flatten(figures):
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    Console(stderr=as_json).print(table)
    if as_json:
        print(json.dumps(figures, default=str), flush=True)


def _flatten(figures: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows
