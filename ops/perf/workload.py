"""What `armed-ops perf` sends: a small self-written pharmacy workload, a seeded Zipf mix of queries, label images.

Queries and products are written for this tool (no external data is copied). Each query has a few candidate
products; together they cover the hierarchy's paths: the deterministic branches (the query inside the name,
same common name), rule vetoes (efficacy or population diverging) and pairs only the LLM judge can decide.
"""

from __future__ import annotations

import base64
import io
import random
from dataclasses import dataclass
from typing import Any

# (query, [product names]): the first product of each list is the likely match.
CATALOGUE: list[tuple[str, list[str]]] = [
    ("布洛芬", ["芬必得 布洛芬缓释胶囊 0.3g*20粒", "对乙酰氨基酚片 0.5g*12片", "维生素C片 100片"]),
    ("感冒 发烧", ["999感冒灵颗粒 10g*9袋", "布洛芬混悬液 100ml", "蒙脱石散 3g*10袋"]),
    ("消栓通络片", ["[德济]消栓通络片1.8g*12片*3板/盒", "复方丹参片 60片", "速效救心丸 40mg*60粒"]),
    ("云南白药气雾剂", ["云南白药膏 10贴", "云南白药气雾剂 85g+30g", "马应龙麝香痔疮膏 10g"]),
    ("维生素C", ["维生素C片 100mg*100片", "汤臣倍健 维生素C咀嚼片 60片", "碳酸钙D3片 60片"]),
    ("阿莫西林", ["阿莫西林胶囊 0.25g*24粒", "红霉素软膏 10g", "头孢克肟分散片 6片"]),
    ("拉肚子", ["蒙脱石散 3g*10袋", "奥美拉唑肠溶胶囊 14粒", "小儿氨酚黄那敏颗粒 12袋"]),
    ("降压药", ["硝苯地平缓释片 10mg*30片", "苯磺酸氨氯地平片 5mg*28片", "二甲双胍片 0.5g*60片"]),
    ("过敏 鼻炎", ["氯雷他定片 10mg*6片", "西替利嗪滴剂 10ml", "布洛芬缓释胶囊 0.3g*20粒"]),
    ("儿童退烧", ["小儿氨酚黄那敏颗粒 12袋", "布洛芬混悬液 100ml 儿童", "复方氨酚烷胺片 12片"]),
    ("眼睛干涩", ["玻璃酸钠滴眼液 0.1% 5ml", "氯霉素滴眼液 8ml", "维C银翘片 24片"]),
    ("胃酸 烧心", ["奥美拉唑肠溶胶囊 20mg*14粒", "铝碳酸镁咀嚼片 20片", "感冒清热颗粒 10袋"]),
    ("降血脂", ["阿托伐他汀钙片 20mg*7片", "复方丹参滴丸 180丸", "阿司匹林肠溶片 100mg*30片"]),
    ("复方丹参", ["复方丹参滴丸 27mg*180丸", "复方丹参片 60片", "速效救心丸 60粒"]),
    ("避孕", ["左炔诺孕酮片 1.5mg*1片", "杜蕾斯 避孕套 12只", "维生素E软胶囊 30粒"]),
    ("补钙", ["碳酸钙D3片 600mg*60片", "汤臣倍健 钙维生素D 100片", "葡萄糖酸锌口服液 12支"]),
    ("痔疮", ["马应龙麝香痔疮膏 10g", "云南白药痔疮膏 15g", "红霉素软膏 10g"]),
    ("糖尿病", ["二甲双胍缓释片 0.5g*30片", "格列美脲片 2mg*30片", "硝苯地平片 10mg*100片"]),
    ("咳嗽", ["川贝枇杷膏 150ml", "复方甘草片 100片", "蒙脱石散 10袋"]),
    ("速效救心丸", ["速效救心丸 40mg*60粒*3瓶", "复方丹参滴丸 180丸", "硝苯地平缓释片 30片"]),
    ("感冒灵", ["999感冒灵颗粒 10g*9袋", "感冒清热颗粒 12g*10袋", "维C银翘片 24片"]),
    ("西地那非", ["枸橼酸西地那非片 100mg*5片", "他达拉非片 20mg*1片", "阿司匹林肠溶片 100mg*30片"]),
    ("同款 芬必得", ["某品牌 芬必得同款 布洛芬胶囊", "芬必得 布洛芬缓释胶囊 0.3g*24粒", "对乙酰氨基酚片"]),
    ("口腔溃疡", ["西瓜霜喷剂 2.5g", "维生素B2片 100片", "红霉素软膏 10g"]),
]


@dataclass(frozen=True)
class Pair:
    query: str
    product: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {"query": self.query, "product": self.product}


def all_pairs(images_every: int = 0) -> list[Pair]:
    """Every (query, product) of the catalogue; product ids are stable. `images_every` > 0 gives every n-th
    product a printed label image (its own name), so the product side has OCR / VL work to do."""
    out: list[Pair] = []
    n = 0
    for qi, (query, products) in enumerate(CATALOGUE):
        for pi, name in enumerate(products):
            product: dict[str, Any] = {"id": f"perf-{qi}-{pi}", "name": name}
            if images_every and n % images_every == 0:
                product["images"] = [{"data": base64.b64encode(label_png([name])).decode()}]
            out.append(Pair(query, product))
            n += 1
    return out


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    """P(rank r) ∝ 1 / r^s for r = 1..n (normalised)."""
    raw = [1.0 / (r**s) for r in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def zipf_mix(requests: int, seed: int, s: float = 1.1, images_every: int = 0) -> list[Pair]:
    """A repeated-pair stream: queries ranked by a Zipf law (a seeded shuffle of the catalogue fixes the ranks),
    each query's product drawn from its candidates with weights 3:2:1 (the likely match shown most)."""
    rng = random.Random(seed)
    pairs = all_pairs(images_every)
    by_query: dict[str, list[Pair]] = {}
    for p in pairs:
        by_query.setdefault(p.query, []).append(p)
    queries = list(by_query)
    rng.shuffle(queries)
    weights = zipf_weights(len(queries), s)
    out = []
    for _ in range(requests):
        q = rng.choices(queries, weights)[0]
        cands = by_query[q]
        out.append(rng.choices(cands, [3, 2, 1][: len(cands)])[0])
    return out


def unique_stream(requests: int, seed: int, images_every: int = 0) -> list[Pair]:
    """Pairs cycling through the whole catalogue in a seeded order (use with caches off for cold numbers)."""
    rng = random.Random(seed)
    pairs = all_pairs(images_every)
    rng.shuffle(pairs)
    return [pairs[i % len(pairs)] for i in range(requests)]


def label_png(lines: list[str], size: tuple[int, int] = (360, 120)) -> bytes:
    """A white label with the lines printed in black (a CJK font where the system has one)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font: Any = None
    for path in ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
                 "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"):
        try:
            font = ImageFont.truetype(path, 22)
            break
        except OSError:
            continue
    font = font or ImageFont.load_default()
    for i, line in enumerate(lines):
        draw.text((10, 10 + 30 * i), line, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
