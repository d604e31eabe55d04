"""Knowledge-base artefacts: built once, loaded without rebuilding, answering exactly as the in-memory KB does,
versioned by content; the register and tcm-insert-ner sources; the settings that pick an artefact; `armed kb`."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from armed.cli import main
from armed.knowledge import KnowledgeBase, KnowledgeError
from armed.knowledge.artefact import install, load_artefact, load_knowledge, write_artefact
from armed.knowledge.content import content_version
from armed.knowledge.frozen import FrozenMatcher
from armed.knowledge.index import Matcher, normalise
from armed.knowledge.register import read_register
from armed.knowledge.sources import NER_HELDOUT_PERCENT, KnowledgeSourceError, read_source
from armed.knowledge.splits import tcm_split
from armed.settings import ArmedSettings, KnowledgeSettings

DATA = Path(__file__).parent / "data"
REGISTER = DATA / "register-example.jsonl"
TEXTS = [
    "[德济]消栓通络片1.8g*12片*3板/盒", "康恩贝消栓通络片", "[康恩贝]消栓通络片 0.37g*36片", "示例堂清肺宝 儿童 止咳",
    "示例清肺颗粒", "修正消栓通络片", "儿童布洛芬混悬液 退烧", "999感冒灵颗粒", "片仔癀", "同仁堂 六味地黄丸 水蜜丸",
    "sildenafil 50mg", "气虚体弱 补气养血 糖衣片", "", "1999元 iphone",
]


def _brat(folder: Path, ids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        text = f"示例补益丸{i} 补气养血，用于气虚体弱。孕妇慎用。糖衣片。"
        (folder / f"{i}.txt").write_text(text, encoding="utf-8")
        spans = [("DRUG", "示例补益丸"), ("DRUG_EFFICACY", "补气"), ("DRUG_EFFICACY", "养血"), ("SYNDROME", "气虚体弱"),
                 ("PERSON_GROUP", "孕妇"), ("DRUG_DOSAGE", "糖衣片")]
        lines = [f"T{k}\t{label} {text.index(s)} {text.index(s) + len(s)}\t{s}"
                 for k, (label, s) in enumerate(spans, 1)]
        (folder / f"{i}.ann").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    ner = _brat(tmp_path_factory.mktemp("ner") / "train", [str(i) for i in range(12)])
    return [f"register:{REGISTER}", f"tcm-insert-ner:{ner}@all"]


@pytest.fixture(scope="module")
def built(sources: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[KnowledgeBase, Path]:
    kb = KnowledgeBase.load(sources=sources)
    out = tmp_path_factory.mktemp("art") / "kb"
    write_artefact(kb, out, sources)
    return kb, out


def test_artefact_answers_exactly_as_the_in_memory_kb(built: tuple[KnowledgeBase, Path]) -> None:
    kb, out = built
    art = load_artefact(out)
    # The artefact's fields as its loader set them (the state API the (de)serialiser uses): mapped, not rebuilt.
    assert isinstance(art.state()["_matcher"], FrozenMatcher)
    manifest = json.loads((out / "manifest.json").read_text())
    assert art.version == kb.version == content_version(art) == manifest["version"]
    assert art.rules_version == kb.rules_version and art.documents == kb.documents
    for text in TEXTS:
        assert art.extract(text) == kb.extract(text), text
        assert [(d.id, d.score) for d in art.search(text, 5)] == [(d.id, d.score) for d in kb.search(text, 5)], text
        assert art.resolve_common_names([text]) == kb.resolve_common_names([text])
        assert art.hijack_terms(text) == kb.hijack_terms(text)
        assert art.strip_noise(text) == kb.strip_noise(text)
    for name in ("消栓通络", "示例清肺", "清肺宝", "示例补益", "布洛芬", "无此药"):
        assert art.drug_record(name) == kb.drug_record(name)
    assert art.same_brand(["浙江康恩贝制药股份有限公司"], ["康恩贝"])
    with pytest.raises(TypeError, match="read-only"):
        art.state()["_matcher"].add("新词", art.lexicon_lookup("康恩贝")[0])


def test_frozen_matcher_matches_the_trie_on_random_text(built: tuple[KnowledgeBase, Path]) -> None:
    kb, out = built
    # The two matchers themselves (state, as the artefact stores it): the memory-mapped one must extract exactly as
    # the trie it was written from, blocked spans included.
    frozen, trie = load_artefact(out).state()["_matcher"], kb.state()["_matcher"]
    assert isinstance(frozen, FrozenMatcher) and type(trie) is Matcher
    rng = random.Random(0)
    surfaces = [s for s, _ in kb.lexicon_entries()]
    filler = list("的了片丸膏和与是在1a9 -")
    for _ in range(300):
        parts = [rng.choice(surfaces) if rng.random() < 0.6 else "".join(rng.choices(filler, k=rng.randint(1, 3)))
                 for _ in range(rng.randint(1, 6))]
        text = normalise("".join(parts))
        blocked = [(2, 4)] if rng.random() < 0.3 else []
        assert frozen.extract(text, blocked) == trie.extract(text, blocked), text


def test_version_is_the_content_not_the_bytes(tmp_path: Path, sources: list[str]) -> None:
    base = KnowledgeBase.load(sources=sources).version
    # The same rows reformatted (key order, spacing) at another path: same content, same version.
    moved = tmp_path / "elsewhere.jsonl"
    rows = [json.loads(line) for line in REGISTER.read_text(encoding="utf-8").splitlines()]
    moved.write_text("\n".join(json.dumps(dict(reversed(r.items())), ensure_ascii=False, indent=None) + "  "
                               for r in rows) + "\n\n", encoding="utf-8")
    assert KnowledgeBase.load(sources=[f"register:{moved}", sources[1]]).version == base
    rows[1]["efficacy"].append("利咽")  # one more efficacy term: new content
    moved.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert KnowledgeBase.load(sources=[f"register:{moved}", sources[1]]).version != base


def test_register_rows_become_brands_names_and_records(built: tuple[KnowledgeBase, Path]) -> None:
    kb, _ = built
    e = kb.extract("[康恩贝]消栓通络片 0.37g*36片")
    assert e.brand == ["康恩贝"] and e.common_name == ["消栓通络"] and e.dosage_form == ["片剂"]
    assert kb.extract("清肺宝").common_name == ["示例清肺"]
    rec = kb.drug_record("示例清肺")
    assert rec is not None and "register" in rec.sources and rec.populations == ["儿童"]
    assert {"清热化痰", "止咳"} <= set(rec.efficacy) and rec.ingredients == ["黄芩", "桔梗"]
    assert kb.drug_record("消栓通络").contraindications == ["孕妇禁用"]
    assert any(d.id == "register:R002" for d in kb.search("示例清肺颗粒 清热化痰", 3))


def test_register_csv_and_errors_name_file_line_and_field(tmp_path: Path) -> None:
    (row,) = read_register(DATA / "register-example.csv")  # x_price is the curator's, ignored
    assert row.efficacy == ("清热化痰", "止咳") and row.population == ("儿童",) and row.id == "C001"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"common_name": "阿莫西林胶囊"}\n{"common_name": "布洛芬", "efficacyy": ["止痛"]}\n',
                   encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"bad\.jsonl:2: efficacyy: Extra inputs"):
        KnowledgeBase.load(sources=[f"register:{bad}"])
    bad.write_text('{"brand": "无名"}\n', encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"bad\.jsonl:1: common_name: Field required"):
        KnowledgeBase.load(sources=[f"register:{bad}"])
    empty = tmp_path / "empty.csv"
    empty.write_text("id,common_name\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="no rows"):
        KnowledgeBase.load(sources=[f"register:{empty}"])
    with pytest.raises(KnowledgeError, match="is not a file"):
        KnowledgeBase.load(sources=[f"register:{DATA}"])
    other = tmp_path / "register.txt"
    other.write_text("x\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"\.jsonl or \.csv"):
        KnowledgeBase.load(sources=[f"register:{other}"])


def test_tcm_insert_ner_split_is_deterministic_and_held_out_by_default(tmp_path: Path) -> None:
    ids = [str(i) for i in range(200)]
    heldout = {i for i in ids if tcm_split(i) == "heldout"}  # the split the NER evaluation reads
    assert abs(len(heldout) / len(ids) - NER_HELDOUT_PERCENT / 100) < 0.08
    folder = _brat(tmp_path / "train", ids)
    train = {d.id for d in read_source(f"tcm-insert-ner:{folder}").ner}
    assert train == set(ids) - heldout  # no split named: train only
    assert {d.id for d in read_source(f"tcm-insert-ner:{folder}@heldout").ner} == heldout
    assert len(read_source(f"tcm-insert-ner:{folder}@all").ner) == len(ids)
    with pytest.raises(KnowledgeSourceError, match="split 'dev'"):
        read_source(f"tcm-insert-ner:{folder}@dev")
    kb = KnowledgeBase.load(sources=[f"tcm-insert-ner:{folder}"])
    assert not {d.id for d in kb.docs()} & {f"tcm-insert:{i}" for i in heldout}
    e = kb.extract("示例补益丸 补气 孕妇 糖衣片")
    assert e.common_name == ["示例补益"] and "补气" in e.efficacy and "孕妇" in e.population
    assert e.dosage_form == ["丸剂", "片剂"] or "片剂" in e.dosage_form
    rec = kb.drug_record("示例补益丸")
    assert rec is not None and rec.efficacy == ["补气", "养血"] and rec.populations == []  # 孕妇: not for it


def test_real_tcm_insert_ner_split(knowledge_dir: Path) -> None:
    folder = knowledge_dir / "tcm-insert-ner" / "train"
    train = read_source(f"tcm-insert-ner:{folder}").ner
    heldout = read_source(f"tcm-insert-ner:{folder}@heldout").ner
    assert len(train) + len(heldout) == 1000 and 150 <= len(heldout) <= 250
    assert not {d.id for d in train} & {d.id for d in heldout}


def test_settings_pick_the_artefact(built: tuple[KnowledgeBase, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    kb, out = built
    assert load_knowledge(KnowledgeSettings(artefact=str(out))).version == kb.version
    monkeypatch.setenv("ARMED_CACHE_DIR", str(tmp_path / "cache"))
    seed = KnowledgeBase.load().version
    assert load_knowledge(KnowledgeSettings()).version == seed  # auto, nothing installed
    install(out)
    assert load_knowledge(KnowledgeSettings()).version == kb.version  # auto finds current
    assert load_knowledge(KnowledgeSettings(artefact="none")).version == seed
    assert load_knowledge(KnowledgeSettings(sources=[f"register:{REGISTER}"])).version not in (
        seed, kb.version)  # sources name another KB: auto steps aside
    monkeypatch.setenv("ARMED_KNOWLEDGE__ARTEFACT", str(out))
    assert ArmedSettings().knowledge.artefact == str(out)
    with pytest.raises(ValueError, match="already holds its seed and sources"):
        KnowledgeSettings(artefact=str(out), sources=[f"register:{REGISTER}"])
    with pytest.raises(KnowledgeError, match=r"no manifest\.json"):
        load_knowledge(KnowledgeSettings(artefact=str(tmp_path)))
    with pytest.raises(KnowledgeError, match="sync an object-store"):
        load_knowledge(KnowledgeSettings(artefact="s3://bucket/kb"))


def test_write_refuses_to_overwrite_another_version(built: tuple[KnowledgeBase, Path], tmp_path: Path) -> None:
    kb, out = built
    copy = tmp_path / "kb"
    shutil.copytree(out, copy)
    assert write_artefact(kb, copy)["version"] == kb.version  # same content: left as it is
    with pytest.raises(ValueError, match="pass --force"):
        write_artefact(KnowledgeBase.load(), copy)
    assert write_artefact(KnowledgeBase.load(), copy, force=True)["version"] == KnowledgeBase.load().version


def test_kb_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARMED_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "kb"
    assert main(["kb", "build", "--source", f"register:{REGISTER}", "--out", str(out), "--install"]) == 0
    built = json.loads(capsys.readouterr().out)
    in_memory = KnowledgeBase.load(None, [f"register:{REGISTER}"])
    assert built["version"] == in_memory.version and built["counts"]["records"] == len(in_memory.records()) > 42
    assert (tmp_path / "cache" / "kb" / "current").resolve() == out.resolve()

    assert main(["kb", "inspect"]) == 0  # the installed one
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == built["version"] and info["counts"]["surfaces.brand"] > 59
    assert any(s.startswith("register:") for s in info["sources"])

    assert main(["kb", "diff", "seed", str(out)]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert "康恩贝" in diff["lexicon"]["brand"]["examples"]["added"]
    assert diff["records"]["added"] == 1 and "消栓通络" in diff["records"]["examples"]["changed"]
    assert diff["rules"] == {"added": 0, "removed": 0, "changed": 0,
                             "examples": {"added": [], "removed": [], "changed": []}}

    assert main(["kb", "lookup", "康恩贝消栓通络片", "--kb", str(out)]) == 0
    hit = json.loads(capsys.readouterr().out)
    assert hit["entities"]["brand"] == ["康恩贝"] and hit["common_name"] == "消栓通络"
    assert hit["records"]["消栓通络"]["contraindications"] == ["孕妇禁用"]
    assert main(["kb", "lookup", "康恩贝", "--kb", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["lexicon"] == [{"field": "brand", "value": "康恩贝", "from": "source"}]

    assert main(["kb", "inspect", str(tmp_path / "nothing")]) == 2
    assert "not a knowledge-base artefact" in capsys.readouterr().err


def test_profile_names_the_artefact_or_leaves_the_environment(built: tuple[KnowledgeBase, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from armed.serving.profiles import Profile, load_profile

    _, out = built
    cpu = load_profile("cpu")
    monkeypatch.setenv("ARMED_KNOWLEDGE__ARTEFACT", "/mnt/kb")  # what the chart sets on the judge's pool
    assert cpu.to_settings().knowledge.artefact == "/mnt/kb"
    data = cpu.model_dump(mode="json")  # what serveConfigV2 hands a replica
    assert Profile.model_validate(data).to_settings().knowledge.artefact == "/mnt/kb"
    data["judge"]["knowledge_artefact"] = str(out)
    assert Profile.model_validate(data).to_settings().knowledge.artefact == str(out)
