"""`armed bench` over several sets and knowledge bases: one ordinary run each, and SUMMARY.md side by side."""

from __future__ import annotations

import json
from pathlib import Path

from armed.engines.base import ModelClients
from armed.eval.bench import BenchOptions
from armed.eval.side_by_side import kb_label, run_side_by_side
from tests.eval.conftest import factory_for, judge_llm, settings

PHARMACY_ROWS = [
    ("感冒灵颗粒", "[999] 感冒灵颗粒 10g*9袋", "highly_relevant", "exact.generic", "generic_name"),
    ("修正消栓通络片", "[德济]消栓通络片 1.8g*12片", "moderately_relevant", "less.brand", "other_maker"),
    ("血压计", "[三诺] 血糖仪 安稳+", "irrelevant", "irrelevant.efficacy", "device"),
    ("板兰根颗粒", "[白云山] 板蓝根颗粒 10g*20袋", "highly_relevant", "exact.spelling", "typo"),
]


def _pharmacy(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i, (q, p, label, clause, qtype) in enumerate(PHARMACY_ROWS):
            f.write(json.dumps({"id": f"p{i}", "query": q, "product": {"name": p}, "label": label, "clause": clause,
                                "query_type": qtype, "product_category": "中西药品", "common_name": q,
                                "split": "report", "source": "hand"}, ensure_ascii=False) + "\n")
    return path


async def test_sets_and_knowledge_bases_side_by_side(armed_set: Path, tmp_path: Path, kb) -> None:
    pharmacy = _pharmacy(tmp_path / "report.jsonl")
    clients = ModelClients(llm=judge_llm(lambda text: "weakly_relevant"))
    out = tmp_path / "out"
    opts = BenchOptions(dataset="", out=out, progress=False, limit=6)
    summary = await run_side_by_side(
        opts, [f"pharmacy:{pharmacy}", f"armed:{armed_set}"], ["seed", "current"], settings(), {},
        ablation=True, ablation_limit=3, factories=lambda _kb: factory_for(kb, clients))
    assert [(r["kb"], Path(r["dataset"]).name) for r in summary["runs"]] == [
        ("seed", "report.jsonl"), ("seed", "set.jsonl"), ("artefact", "report.jsonl"), ("artefact", "set.jsonl")]
    for r in summary["runs"]:
        assert (Path(r["dir"]) / "metrics.json").is_file()
        assert (Path(r["dir"] + "-ablation") / "ablation.json").is_file()
        assert r["ladder"][-1]["rung"] == "+student" and r["kb_version"] == kb.version
    pharmacy_run = summary["runs"][0]
    assert pharmacy_run["n"] == 4 and pharmacy_run["accuracy_all"] == 1.0  # the guideline's clauses, no model
    assert set(pharmacy_run["per_query_type"]) == {"generic_name", "other_maker", "device", "typo"}
    text = (out / "SUMMARY.md").read_text(encoding="utf-8")
    assert "## Per query type" in text and "## Ablation ladder" in text and "| +PS |" in text
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == summary
    assert kb_label("none") == "seed" and kb_label("/x/y") == "-x-y"
