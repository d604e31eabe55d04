"""Generate helm/armed/README.md from values.yaml: every `# -- ` comment documents the key that follows it.

The README's prose lives in helm/armed/README.md.gotmpl (`{{VALUES_TABLE}}` marks where the table goes);
`armed-ops chart-readme` rewrites README.md and tests/k8s/test_chart.py fails when it is stale or a value has no
description.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ops.profile_values import CHART_DIR


def value_docs(values_path: Path = CHART_DIR / "values.yaml") -> list[tuple[str, str, str]]:
    """[(dotted key, default as JSON, description)] in file order; description "" when a key has none."""
    data = yaml.safe_load(values_path.read_text(encoding="utf-8"))
    rows: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    in_comment = False
    for raw in values_path.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending, in_comment = [stripped[4:].strip()], True
            continue
        if stripped.startswith("#"):
            if in_comment:
                pending.append(stripped[1:].strip())
            continue
        in_comment = False
        if not stripped or stripped.startswith("- ") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0].strip().strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        stack.append((indent, key))
        node = data
        for k in path:
            node = node[k] if isinstance(node, dict) else None
        is_leaf = not isinstance(node, dict) or not node or bool(pending)
        if is_leaf:
            rows.append((".".join(path), json.dumps(node, ensure_ascii=False), " ".join(pending)))
            if isinstance(node, dict) and node:
                stack.pop()
                stack.append((indent, key))
        pending = []
    # Keys documented as a whole block: drop their children from the table.
    documented = [k for k, _, d in rows if d]
    return [r for r in rows if not any(r[0].startswith(d + ".") for d in documented)]


def values_table() -> str:
    lines = ["| Key | Default | Description |", "|---|---|---|"]
    for key, default, desc in value_docs():
        default, desc = default.replace("|", r"\|"), desc.replace("|", r"\|")
        lines.append(f"| `{key}` | `{default}` | {desc} |")
    return "\n".join(lines)


def readme() -> str:
    tmpl = (CHART_DIR / "README.md.gotmpl").read_text(encoding="utf-8")
    return tmpl.replace("{{VALUES_TABLE}}", values_table())


def write_readme() -> Path:
    path = CHART_DIR / "README.md"
    path.write_text(readme(), encoding="utf-8")
    return path
