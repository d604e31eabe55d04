"""The chart's NOTES.txt as `helm install` prints it, for the tests that read it (test_chart.py, test_chart_api_key.py).

`helm template` does not render NOTES.txt, so a copy of the chart gets one more template: a ConfigMap whose data is
the notes rendered with the same values.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ops import chart as ch
from ops.profile_values import CHART_DIR


def render_notes(tmp_path: Path, **template_kw: Any) -> str:
    """NOTES.txt rendered by `helm template` with `template_kw` (profile=..., sets=...: ops.chart.template's)."""
    chart = tmp_path / "armed"
    shutil.copytree(CHART_DIR, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "notes-render.yaml").write_text(
        '{{- define "notes" -}}\n' + notes + "\n{{- end -}}\napiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: notes}\ndata:\n  notes: {{ include \"notes\" . | quote }}\n", encoding="utf-8")
    objs = ch.template(chart=chart, **template_kw)
    return next(o for o in objs if o["metadata"]["name"] == "notes")["data"]["notes"]
