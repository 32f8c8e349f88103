"""How meshgatectl prints resources: kumactl-like tables, YAML and JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import yaml

from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.model import LABEL_ZONE

__all__ = ["OutputFormat", "age", "render", "render_table", "table"]

# kumactl's table printer separates columns with three spaces.
_COLUMN_GAP = 3


class OutputFormat(StrEnum):
    TABLE = "table"
    YAML = "yaml"
    JSON = "json"


def age(timestamp: object, now: datetime) -> str:
    """kumactl's table.Duration: 42s, 5m, 3h, 12d, 2y; "never" for a time in the future, "-" if unknown."""
    if not isinstance(timestamp, str) or not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int((now - then).total_seconds())
    if seconds < -1:
        return "never"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    hours = seconds // 3600
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"


def _row(kind: KindDescriptor, item: Mapping[str, Any], now: datetime) -> list[str]:
    row = [str(item.get("mesh", ""))] if kind.mesh_scoped else []
    row.append(str(item.get("name", "")))
    if kind.name == kinds.DATAPLANE:
        labels = item.get("labels")
        zone = labels.get(LABEL_ZONE, "") if isinstance(labels, Mapping) else ""
        row.append(str(zone))
    # kumactl ages a resource from its last modification.
    row.append(age(item.get("modificationTime"), now))
    return row


def _headers(kind: KindDescriptor) -> list[str]:
    headers = ["MESH", "NAME"] if kind.mesh_scoped else ["NAME"]
    if kind.name == kinds.DATAPLANE:
        headers.append("ZONE")
    return [*headers, "AGE"]


def table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Rows (headers first) as kumactl prints them: left-aligned columns three spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append(indent + (" " * _COLUMN_GAP).join(cells).rstrip())
    return "\n".join(lines) + "\n"


def render_table(kind: KindDescriptor, items: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return table([_headers(kind), *(_row(kind, item, now) for item in items)])


def render(
    kind: KindDescriptor,
    data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    fmt: OutputFormat,
    now: datetime | None = None,
) -> str:
    """One resource (a mapping) or a list of them, in `fmt`. A list prints as Kuma's list body."""
    if fmt is OutputFormat.TABLE:
        return render_table(kind, [data] if isinstance(data, Mapping) else data, now)
    doc: Any = data if isinstance(data, Mapping) else {"total": len(data), "items": list(data), "next": None}
    if fmt is OutputFormat.JSON:
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
