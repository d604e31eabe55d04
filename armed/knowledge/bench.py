"""Scale benchmark of knowledge-base artefacts: build time, size, replica load time, lookup latency, memory.

    python -m armed.knowledge.bench --knowledge ../shared/data/knowledge --scale 1 10 100 --out benchmarks/kb

1x is the public sources (drug-inserts, drug-dicts, originator-drugs, tcm-insert-ner@train). N x adds a synthetic
pharmacy register (register:FILE.jsonl) of (N - 1) x R rows, R = the drug records of 1x, so N x holds about N times
1x's drug records. Rows recombine real vocabulary (seed 0): brand = three characters drawn from the real brands'
characters, maker = province + brand + 制药有限公司, common name = the first two characters of one real common name
+ the last two of another, a seed dosage form, one to three real efficacy terms, a seed category and population.

Each size is built in this process (the cost every replica paid before artefacts), written, then opened in a fresh
subprocess, as a replica does, which times the load and the lookups and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from armed.knowledge.base import KnowledgeBase

_PROVINCES = "北京 上海 浙江 江苏 广东 四川 山东 湖北 吉林 云南 河南 安徽 江西 福建 重庆 天津 陕西".split()


def public_sources(knowledge: Path) -> list[str]:
    return [f"drug-inserts:{knowledge / 'drug-inserts'}", f"drug-dicts:{knowledge / 'drug-dicts'}",
            f"originator-drugs:{knowledge / 'originator-drugs'}",
            f"tcm-insert-ner:{knowledge / 'tcm-insert-ner/train'}"]


def synthetic_register(kb: KnowledgeBase, rows: int, out: Path, seed: int = 0) -> list[str]:
    """Write `rows` synthetic register rows (see module doc); returns sample product titles for lookups."""
    rng = random.Random(seed)
    brand_chars = sorted({ch for b in kb.brand_names() for ch in b if "\u4e00" <= ch <= "\u9fff"})
    names = sorted({n for n in kb.common_names() if len(n) >= 3 and all("\u4e00" <= c <= "\u9fff" for c in n)})
    efficacy = sorted({e for r in kb.records().values() for e in r.efficacy if 2 <= len(e) <= 8})
    forms = [f.name for f in kb.seed.lexicons.dosage_forms]
    cats = [c.name for c in kb.seed.lexicons.categories]
    pops = [p.name for p in kb.seed.lexicons.populations]
    titles: list[str] = []
    with out.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            brand = "".join(rng.choices(brand_chars, k=3))
            cn = rng.choice(names)[:2] + rng.choice(names)[-2:]
            form = rng.choice(forms)
            row = {"id": f"syn{i}", "brand": brand, "maker": f"{rng.choice(_PROVINCES)}{brand}制药有限公司",
                   "common_name": cn + form, "dosage_form": form,
                   "specification": f"{rng.randint(1, 9)}g*{rng.randint(6, 48)}",
                   "efficacy": rng.sample(efficacy, rng.randint(1, 3)), "category": [rng.choice(cats)],
                   "population": [rng.choice(pops)] if rng.random() < 0.2 else []}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            if i % max(1, rows // 500) == 0:
                titles.append(f"[{brand}]{cn}{form} {row['specification']}/盒")
    return titles


_REPLICA = r"""
import json, sys, time
t0 = time.perf_counter()
from armed.knowledge.artefact import load_artefact
t1 = time.perf_counter()
kb = load_artefact(sys.argv[1])
t2 = time.perf_counter()
titles = json.loads(open(sys.argv[2], encoding="utf-8").read())
def one(t):
    e = kb.extract(t)
    kb.resolve_common_names(e.common_name)
    kb.enrich(e)
for t in titles[:20]:
    one(t)  # first touches page the arrays in; a replica's readiness probe does the same
lat, cpu, srch = [], [], []
for t in titles * 3:
    s, c = time.perf_counter(), time.thread_time(); one(t)
    lat.append(time.perf_counter() - s); cpu.append(time.thread_time() - c)
for t in titles:
    s = time.perf_counter(); kb.search(t, 5); srch.append(time.perf_counter() - s)
lat.sort(); cpu.sort(); srch.sort()
q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] * 1000
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "lookup_p50_ms": q(lat, .5), "lookup_p99_ms": q(lat, .99),
                  "lookup_cpu_p99_ms": q(cpu, .99),
                  "search_p50_ms": q(srch, .5), "search_p99_ms": q(srch, .99), "lookups": len(lat),
                  # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the builder's peak.
                  "replica_peak_rss_mb": [int(l.split()[1]) for l in open("/proc/self/status")
                                          if l.startswith("VmHWM")][0] / 1024}))
"""


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_scale(knowledge: Path, scale: int, work: Path, dev_titles: list[str]) -> dict[str, Any]:
    from armed.knowledge.artefact import write_artefact

    sources = public_sources(knowledge)
    base = KnowledgeBase.load(sources=sources)
    titles = list(dev_titles)
    extra_rows = 0
    if scale > 1:
        extra_rows = (scale - 1) * len(base.records())
        reg = work / f"register-{scale}x.jsonl"
        titles += synthetic_register(base, extra_rows, reg)
        sources = [*sources, f"register:{reg}"]
    del base
    started = time.perf_counter()
    kb = KnowledgeBase.load(sources=sources)
    built = time.perf_counter() - started
    art = work / f"kb-{scale}x"
    manifest = write_artefact(kb, art, sources, force=True)
    written = time.perf_counter() - started
    del kb
    tfile = work / "titles.json"
    tfile.write_text(json.dumps(titles, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    replica = json.loads(subprocess.run([sys.executable, "-c", _REPLICA, str(art), str(tfile)], check=True,
                                        capture_output=True, text=True, env=env).stdout)
    return {"scale": scale, "synthetic_rows": extra_rows, "version": manifest["version"],
            "records": manifest["counts"]["records"], "documents": manifest["counts"]["documents"],
            "surfaces": sum(v for k, v in manifest["counts"].items() if k.startswith("surfaces.")),
            "build_in_memory_s": round(built, 2), "build_and_write_s": round(written, 2),
            "artefact_mb": round(_du(art) / 2**20, 1),
            "build_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            **{k: round(v, 3) for k, v in replica.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--knowledge", default="../shared/data/knowledge", help="the public knowledge folder")
    p.add_argument("--eval", default="../shared/data/eval/kuake-qtr-dev.json", help="real titles for lookups")
    p.add_argument("--scale", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--out", default="benchmarks/kb", help="writes results-<N>x.json here (run one scale per "
                   "process for a clean build_peak_rss_mb: it is the process's peak so far)")
    p.add_argument("--work", help="where artefacts are written (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    knowledge = Path(args.knowledge).resolve()
    dev = json.loads(Path(args.eval).read_text(encoding="utf-8"))[:300] if Path(args.eval).is_file() else []
    dev_titles = [r["title"] for r in dev] + [r["query"] for r in dev]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kb-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for scale in args.scale:
            results.append(run_scale(knowledge, scale, work, dev_titles))
            print(json.dumps(results[-1], ensure_ascii=False), flush=True)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"results-{scale}x.json").write_text(json.dumps(results[-1], ensure_ascii=False, indent=2) + "\n",
                                                        encoding="utf-8")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
