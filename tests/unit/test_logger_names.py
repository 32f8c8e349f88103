"""Every structlog logger is named after its module (`structlog.get_logger(__name__)`), read from the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _logger_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "get_logger"
    ]


def test_loggers_are_named_after_their_module() -> None:
    offences = []
    for top in ("meshgate", "global_cp", "zone_cp"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for call in _logger_calls(path):
                named = [type(arg) for arg in call.args] == [ast.Name] and ast.unparse(call.args[0]) == "__name__"
                if not named:
                    offences.append(f"{rel}:{call.lineno}: {ast.unparse(call)}")
    assert offences == []
