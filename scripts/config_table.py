"""Print the configuration table of README.md, generated from the one Settings object."""

from __future__ import annotations

import json

from service.cli import serve_flags
from service.config import Settings


def table() -> str:
    """A Markdown table: each setting's variable, flag (where one exists), default and meaning."""
    flags = serve_flags()
    lines = ["| variable | flag | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = json.dumps(field.default) if field.default is not None else "unset"
        flag = f"`{flags[name]}`" if name in flags else ""
        lines.append(f"| `GRADSERVE_{name.upper()}` | {flag} | `{default}` | {field.description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
