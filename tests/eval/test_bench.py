"""`armed bench` end to end over the real knowledge base with model doubles: outputs, resume, FAILED, endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from armed.engines.base import ModelClients
from armed.eval.bench import ABLATION_LADDER, BenchOptions, run_ablation, run_bench
from armed.eval.runner import EndpointJudge, read_predictions
from tests.eval.conftest import factory_for, judge_llm, settings

OUTPUTS = ("metrics.json", "predictions.jsonl", "report.md", "confusion.png", "per_class.png", "per_category.png")


def _clients() -> ModelClients:
    return ModelClients(llm=judge_llm(lambda text: "weakly_relevant"))


async def test_bench_writes_everything(armed_set: Path, tmp_path: Path, kb) -> None:
    out = tmp_path / "out"
    r = await run_bench(BenchOptions(dataset=f"armed:{armed_set}", out=out, progress=False),
                        settings(), factory_for(kb, _clients()))
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    for key in ("loss_rate", "highly_precision", "less_recall", "irrelevant_f1", "accuracy_all",
                "accuracy_wo_failed", "accuracy_hard", "macro_f1", "n", "confusion", "per_category"):
        assert key in m["armed"], key
    assert m["armed"]["n"] == 18 and m["armed"]["loss_rate"] == 0.0
    assert m["dataset"]["label_mapping"]["weakly_relevant"] == "less_relevant"
    assert m["versions"]["judgment"]["models"]["llm"] == "scripted-judge"
    h = m["heldout"]
    assert h["split"]["tune_n"] + h["split"]["test_n"] == 18
    assert h["armed"]["n"] == h["lexical_baseline"]["n"] == h["split"]["test_n"]
    assert "llm_judge" in m["branches"]  # the scripted judge decided the undecided pairs
    report = (out / "report.md").read_text()
    assert "lexical baseline" in report and "![confusion matrix](confusion.png)" in report
    assert r["armed"]["accuracy_all"] == m["armed"]["accuracy_all"]


async def test_bench_resumes_without_repeating(armed_set: Path, tmp_path: Path, kb) -> None:
    out = tmp_path / "out"
    llm = judge_llm(lambda text: "weakly_relevant")
    opts = BenchOptions(dataset=f"armed:{armed_set}", out=out, progress=False, limit=10)
    await run_bench(opts, settings(), factory_for(kb, ModelClients(llm=llm)))
    preds = out / "predictions.jsonl"
    lines = preds.read_text().splitlines()
    # simulate a crash: keep 4 rows and a half-written fifth
    preds.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    calls_before = len(llm.calls)
    await run_bench(opts, settings(), factory_for(kb, ModelClients(llm=llm)))
    rows = [json.loads(x) for x in preds.read_text().splitlines()]
    assert len(rows) == 10 and len({r["id"] for r in rows}) == 10
    assert len(llm.calls) - calls_before < calls_before  # only the missing rows were judged again


async def test_bench_refuses_to_resume_another_judges_rows(armed_set: Path, tmp_path: Path, kb) -> None:
    """A rerun with another model must not keep the first model's rows (that mixed two students once)."""
    out = tmp_path / "out"
    opts = BenchOptions(dataset=f"armed:{armed_set}", out=out, progress=False, limit=6)
    await run_bench(opts, settings(), factory_for(kb, _clients()))
    preds = out / "predictions.jsonl"
    rows = [json.loads(x) for x in preds.read_text().splitlines()]
    rows[0]["versions"]["models"]["llm"] = "another-model"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    with pytest.raises(ValueError, match="other versions"):
        await run_bench(opts, settings(), factory_for(kb, _clients()))
    assert len(preds.read_text().splitlines()) == 3  # nothing appended


async def test_failed_judgments_count_as_loss(armed_set: Path, tmp_path: Path, kb) -> None:
    from armed_testing.scripted import ScriptedChatModel

    # an LLM that raises on the judge: the pipeline degrades to its fallback, so nothing is FAILED...
    broken = ScriptedChatModel(fail=True)
    r = await run_bench(BenchOptions(dataset=f"armed:{armed_set}", out=tmp_path / "a", progress=False),
                        settings(), factory_for(kb, ModelClients(llm=broken)))
    assert r["armed"]["loss_rate"] == 0.0 and "fallback" in r["branches"]

    # ...but a pipeline that raises for some pairs yields FAILED rows (pred null)
    class Exploding:
        def __init__(self, inner):
            self.inner, self.kb = inner, inner.kb

        async def judge(self, query, product):
            if "布洛芬" in product["name"]:
                raise RuntimeError("engine crashed")
            return await self.inner.judge(query, product)

    make = factory_for(kb, _clients())
    r = await run_bench(BenchOptions(dataset=f"armed:{armed_set}", out=tmp_path / "b", progress=False),
                        settings(), lambda s: Exploding(make(s)))
    rows = read_predictions(tmp_path / "b" / "predictions.jsonl")
    failed = [x for x in rows.values() if x["pred"] is None]
    assert len(failed) == 3 and all("engine crashed" in x["error"] for x in failed)
    assert r["armed"]["loss_rate"] == pytest.approx(3 / 18)
    assert r["armed"]["accuracy_wo_failed"] >= r["armed"]["accuracy_all"]
    assert r["armed"]["confusion"]["matrix"][0][3] + r["armed"]["confusion"]["matrix"][2][3] == 3


async def test_endpoint_judge(armed_set: Path, tmp_path: Path, kb) -> None:
    pipeline = factory_for(kb, _clients())(settings())
    seen = []

    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/judge"
        body = json.loads(request.content)
        seen.append(body)
        if body["query"] == "口罩":
            return httpx.Response(500, text="boom")
        j = await pipeline.judge(body["query"], body["product"])
        return httpx.Response(200, json=j.model_dump(mode="json"))

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    judge = EndpointJudge("http://armed.test/", client=client)
    from armed.eval.datasets import load_dataset
    from armed.eval.runner import run_predictions

    ds = load_dataset(f"armed:{armed_set}")
    rows = await run_predictions(ds.items, judge, tmp_path / "p.jsonl", progress=False)
    assert len(seen) == 18 and set(seen[0]) == {"query", "product"} and "name" in seen[0]["product"]
    bad = [r for r in rows.values() if r["pred"] is None]
    assert len(bad) == 1 and "HTTP 500" in bad[0]["error"]


async def test_ablation_ladder(armed_set: Path, tmp_path: Path, kb) -> None:
    built = []

    def make(s):
        built.append(s.stages.model_copy())
        return factory_for(kb, _clients())(s)

    rows = await run_ablation(BenchOptions(dataset=f"armed:{armed_set}", out=tmp_path, progress=False, limit=8),
                              settings(), make)
    assert [n for n, _ in rows] == [n for n, _ in ABLATION_LADDER]
    assert not any([built[0].query_rewrite, built[0].search, built[0].extend, built[0].query_change])
    assert built[1].query_rewrite and not built[1].extend
    assert all([built[-1].query_rewrite, built[-1].extend, built[-1].search, built[-1].identical_page,
                built[-1].two_stage_filter, built[-1].common_name, built[-1].query_change])
    table = (tmp_path / "ablation.md").read_text()
    assert "base Q+S" in table and "+QC" in table and (tmp_path / "ablation.png").exists()
    assert json.loads((tmp_path / "ablation.json").read_text())["ladder"][0]["n"] == 8


def test_cli_bench(armed_set: Path, tmp_path: Path, kb, monkeypatch, capsys) -> None:
    from armed import cli
    from armed.eval import bench

    monkeypatch.setattr(bench, "default_factory", lambda: factory_for(kb, _clients()))
    out = tmp_path / "cli"
    code = cli.main(["bench", "--dataset", f"armed:{armed_set}", "--out", str(out), "--quiet", "--limit", "12"])
    assert code == 0
    assert "lexical baseline (held-out)" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["command"].startswith("armed ") and m["dataset"]["sample"]["n"] == 12
    assert cli.main(["bench", "--dataset", "bad", "--out", str(out)]) == 2


async def test_report_only_scores_an_interrupted_run(armed_set: Path, tmp_path: Path, kb) -> None:
    out = tmp_path / "out"
    opts = BenchOptions(dataset=f"armed:{armed_set}", out=out, progress=False)
    await run_bench(opts, settings(), factory_for(kb, _clients()))
    lines = (out / "predictions.jsonl").read_text().splitlines()
    (out / "predictions.jsonl").write_text("\n".join(lines[:7]) + "\n")
    opts.report_only = True
    r = await run_bench(opts, settings(), None)
    assert r["armed"]["n"] == 7 and r["dataset"]["sample"]["scored"] == 7
    assert "interrupted" in (out / "report.md").read_text()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 7
