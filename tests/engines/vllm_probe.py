"""Runs the vLLM engines on the tiny checkpoints in a fresh process and prints one JSON document.

vLLM owns process-wide state (platform detection, compiled grammars, a NUMA-bound allocator) and leaks native
objects on shutdown; a subprocess keeps all of that out of the pytest process. Usage:
    python -m tests.engines.vllm_probe --causal DIR --classifier DIR --labels a,b,c [--student DIR]
        [--consistency DIR [--consistency-profile NAME]] --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import random
import time

from armed.engines.base import ChatMessage

CHOICES = ["相关", "不相关", "部分相关"]
EMBED_TEXTS = ["感冒发烧", "布洛芬缓释胶囊 0.3g*20粒", "眼药水"]
PAIRS = [["感冒发烧", "布洛芬"], ["眼睛干涩", "玻璃酸钠滴眼液"], ["a", "b"]]
# (query, retrieved document as the two-stage filter sends it: title, a space, text)
CONSISTENCY_PAIRS = [*PAIRS, ["布洛芬", "布洛芬缓释胶囊 用于缓解轻至中度疼痛，如头痛、关节痛。"],
                     ["布洛芬", "阿莫西林胶囊 主治细菌感染"]]


async def run(args: argparse.Namespace) -> dict:
    from armed.engines.vllm_engine import VLLMChatModel, VLLMEmbedder, VLLMPairClassifier

    report: dict = {}
    t = time.perf_counter()
    chat = VLLMChatModel(args.causal, max_model_len=512, max_num_seqs=4, dtype="float32")
    report["chat_start_s"] = time.perf_counter() - t
    rng = random.Random(0)
    words = ["感冒", "发烧", "布洛芬", "眼药水", "维生素C", "儿童", "咳嗽", "片剂", "hello", "药"]
    results = []
    t = time.perf_counter()
    for _ in range(5):
        query = "".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        r = await chat.choose([ChatMessage("system", "判断相关性"), ChatMessage("user", query)], CHOICES)
        results.append(
            {
                "label": r.label,
                "probabilities": r.probabilities,
                "prompt_tokens": r.prompt_tokens,
                "output_tokens": r.output_tokens,
                "model": r.model,
            }
        )
    report["choose_s"] = time.perf_counter() - t
    report["choose"] = results
    # the same prompts concurrently: merged into batches, the same answers as one by one
    rng = random.Random(0)
    queries = ["".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for _ in range(5)]
    before = len(chat.batch_sizes)
    t = time.perf_counter()
    asks = [[ChatMessage("system", "判断相关性"), ChatMessage("user", q)] for q in queries]
    together = await asyncio.gather(*(chat.choose(m, CHOICES) for m in asks))
    report["choose_concurrent_s"] = time.perf_counter() - t
    report["choose_concurrent"] = [{"label": r.label, "probabilities": r.probabilities} for r in together]
    report["choose_concurrent_batches"] = list(chat.batch_sizes)[before:]
    broken = await asyncio.gather(chat.choose([ChatMessage("user", "看图", (b"not an image",))], CHOICES),
                                  chat.choose([ChatMessage("user", "感冒")], CHOICES), return_exceptions=True)
    report["broken_image_in_batch"] = [type(r).__name__ if isinstance(r, BaseException) else r.label for r in broken]
    report["generate"] = await chat.generate([ChatMessage("user", "你好")], max_tokens=8)
    from armed.engines.base import SamplingOptions

    done = await chat.complete([ChatMessage("user", "你好")], SamplingOptions(max_tokens=5))
    report["complete"] = dataclasses.asdict(done)
    seeded = [await chat.complete([ChatMessage("user", "你好")], SamplingOptions(max_tokens=6, temperature=1.0,
                                                                               seed=3)) for _ in range(2)]
    report["complete_seeded_equal"] = seeded[0] == seeded[1]
    # a prompt past the context (512 here) fails alone; the call batched with it is answered
    mixed = await asyncio.gather(chat.complete([ChatMessage("user", "感冒 " * 600)], SamplingOptions(max_tokens=8)),
                                 chat.complete([ChatMessage("user", "感冒")], SamplingOptions(max_tokens=4)),
                                 return_exceptions=True)
    report["too_long_in_batch"] = [type(r).__name__ for r in mixed]
    del chat
    gc.collect()

    t = time.perf_counter()
    emb = VLLMEmbedder(args.causal, max_model_len=512, dtype="float32")
    report["embed"] = await emb.embed(EMBED_TEXTS)
    report["embed_tokens"] = await emb.count_tokens(EMBED_TEXTS)
    report["embed_s"] = time.perf_counter() - t
    del emb
    gc.collect()

    t = time.perf_counter()
    clf = VLLMPairClassifier(args.classifier, labels=args.labels.split(","), max_model_len=512, dtype="float32")
    report["classify"] = await clf.classify([tuple(p) for p in PAIRS])
    report["classify_s"] = time.perf_counter() - t
    report["classify_model"] = clf.model_id
    if args.student:
        # The distilled student classifier exactly as a GPU profile loads it (four level labels, student template).
        del clf
        gc.collect()
        from armed.student.engine import LABELS, STUDENT_TEMPLATE

        student = VLLMPairClassifier(args.student, labels=LABELS, template=STUDENT_TEMPLATE, max_model_len=512,
                                     dtype="float32")
        report["student"] = await student.classify([tuple(p) for p in PAIRS])
    if args.consistency:
        # The distilled consistency classifier exactly as a GPU profile's models.consistency loads it: the profile's
        # engine spec (labels) through the factory (template), pointed at the folder, sized for this CPU.
        gc.collect()
        from armed.engines.factory import build_engine
        from armed.serving.profiles import load_profile

        spec = load_profile(args.consistency_profile).models["consistency"].engine.model_copy(
            update={"model": args.consistency, "dtype": "float32", "max_model_len": 512, "max_num_seqs": 4})
        t = time.perf_counter()
        consistency = build_engine("consistency", spec)
        report["consistency_labels"] = list(consistency.labels)
        report["consistency_template"] = consistency.template
        report["consistency"] = await consistency.classify([tuple(p) for p in CONSISTENCY_PAIRS])
        report["consistency_s"] = time.perf_counter() - t
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--causal", required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--student", help="a distilled student classifier folder (armed distill --student classifier:)")
    parser.add_argument("--consistency", help="a distilled consistency classifier folder (armed distill --task "
                        "consistency --student classifier:)")
    parser.add_argument("--consistency-profile", default="l4", help="the GPU profile whose models.consistency loads it")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(report, fh, ensure_ascii=False)


if __name__ == "__main__":
    main()
