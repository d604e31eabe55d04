"""Product understanding: read images → cheating check → standardise name → extend (SI).

Cacheable by product id + content hash. The merchant's name is untrusted: cheating is checked against what
the images show, and every entity added comes from the name, the CPV attributes, the images' text or the
knowledge base — each source is written into the notes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from armed import images
from armed.domain import Entities, EntityField, ImageRef, Product, SideUnderstanding
from armed.engines.base import ModelClients
from armed.errors import InputError
from armed.images import ImageSettings
from armed.knowledge.base import KnowledgeBase
from armed.pipeline import prompts
from armed.pipeline.stages import Detailed, StageRecorder, ground_in_knowledge
from armed.settings import ArmedSettings
from armed.text import normalise

# CPV property names (Chinese and English) → the entity slot they fill.
CPV_FIELDS: dict[str, EntityField] = {
    "品牌": EntityField.brand,
    "brand": EntityField.brand,
    "通用名": EntityField.common_name,
    "通用名称": EntityField.common_name,
    "药品名称": EntityField.common_name,
    "common_name": EntityField.common_name,
    "剂型": EntityField.dosage_form,
    "dosage_form": EntityField.dosage_form,
    "规格": EntityField.specification,
    "specification": EntityField.specification,
    "功能主治": EntityField.efficacy,
    "适应症": EntityField.efficacy,
    "功效": EntityField.efficacy,
    "efficacy": EntityField.efficacy,
    "适用人群": EntityField.population,
    "population": EntityField.population,
    "成分": EntityField.ingredients,
    "主要成分": EntityField.ingredients,
    "ingredients": EntityField.ingredients,
}
# Text fields are run through the lexicon so that free text ("用于感冒引起的头痛发热") becomes canonical terms.
_FREE_TEXT_FIELDS = {EntityField.efficacy, EntityField.population, EntityField.ingredients}


class ProductUnderstanding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    side: SideUnderstanding
    standard_name: str
    cheating: bool = False
    cheating_reason: str | None = None
    image_text: list[str] = Field(default_factory=list)


@dataclass
class _Cheating:
    flag: bool
    reason: str | None


async def resolve_images(product: Product, settings: ImageSettings, timeout_s: float | None = None) -> Product:
    """The product with every image as checked bytes: URLs fetched (only where images.fetch_hosts allows) and each
    image decoded once, before any model runs, so a broken image is the caller's error (an InputError naming it),
    never a stage's. Done once per judgment; the product side then reads `data` only."""
    if not product.images:
        return product

    async def one(i: int, img: ImageRef) -> ImageRef:
        try:
            data = await images.load_checked(img, settings)
        except images.ImageError as exc:
            raise InputError(f"product.images[{i}]", exc.message) from None
        return img if img.data is not None else ImageRef(data=data)

    try:  # `timeouts.image_read`: fetching and decoding every image, together; slower is the caller's problem
        refs = await asyncio.wait_for(asyncio.gather(*(one(i, img) for i, img in enumerate(product.images))),
                                      timeout_s)
    except TimeoutError:
        raise InputError("product.images", f"the images could not be read within {timeout_s:g}s") from None
    return product.model_copy(update={"images": tuple(refs)})


class ProductSide:
    def __init__(self, settings: ArmedSettings, kb: KnowledgeBase, clients: ModelClients) -> None:
        self.s = settings
        self.kb = kb
        self.clients = clients

    async def run(self, product: Product, images: list[bytes], rec: StageRecorder) -> ProductUnderstanding:
        notes: list[str] = []
        no_read = "no images" if not images else ("no OCR engine" if self.clients.ocr is None else None)
        image_text: list[str] = await rec.run(
            "read_images",
            lambda: self._read_images(images),
            self.s,
            default=[],
            skip_reason=no_read,
        )
        cheat = await rec.run(
            "cheating_check",
            lambda: self._cheating(product.name, images, image_text),
            self.s,
            default=_Cheating(False, None),
        )
        standard = await rec.run(
            "standardise",
            lambda: self._standardise(product),
            self.s,
            default=product.name,
        )
        entities = self.kb.extract(standard)
        # The merchant's own name too whenever standardising changed it at all: unwrapping [康恩贝] to 康恩贝 is
        # no change to armed.text.normalise, but the bracket is what shows an unknown word to be the maker.
        if standard != product.name:
            entities = entities.merge(self.kb.extract(product.name))
        entities = await rec.run(
            "extend",
            lambda: self._extend(product, entities, image_text, notes),
            self.s,
            default=entities,
        )
        if product.category:
            cat_entities = self.kb.extract(product.category)
            entities = entities.merge(Entities(category=cat_entities.category))
        return ProductUnderstanding(
            side=SideUnderstanding(
                original=product.name,
                rewritten=standard if standard != product.name else None,
                categories=entities.category,
                entities=entities,
                notes=notes,
            ),
            standard_name=standard,
            cheating=cheat.flag,
            cheating_reason=cheat.reason,
            image_text=image_text,
        )

    async def _read_images(self, images: list[bytes]) -> Detailed[list[str]]:
        assert self.clients.ocr is not None
        lines: list[str] = []
        for data in images:
            lines += await self.clients.ocr.read(data)
        return Detailed(lines, f"{len(lines)} lines from {len(images)} images")

    async def _cheating(self, name: str, images: list[bytes], image_text: list[str]) -> Detailed[_Cheating]:
        hijack = self.kb.hijack_terms(name)
        if hijack:
            return Detailed(
                _Cheating(True, f"traffic hijacking: the name borrows another product with {hijack}"), "name pattern"
            )
        if not images:
            return Detailed(_Cheating(False, None), "no images to check against")
        if self.clients.vl is not None:
            res = await self.clients.vl.choose(prompts.cheating(name, images, image_text), prompts.CHEATING_CHOICES)
            p = res.probabilities.get("cheating", 0.0)
            if res.label == "cheating":
                return Detailed(_Cheating(True, f"{res.model}: the name contradicts the images (p={p:.2f})"), res.model)
            return Detailed(_Cheating(False, None), f"{res.model}: consistent (p_cheating={p:.2f})")
        return Detailed(self._cheating_from_text(name, image_text), "image text vs knowledge base")

    def _cheating_from_text(self, name: str, image_text: list[str]) -> _Cheating:
        """Without a VL model: the images' printed text must not name a different drug or brand than the name."""
        if not image_text:
            return _Cheating(False, None)
        shown = self.kb.extract(" ".join(image_text))
        claimed = self.kb.extract(name)
        for f in (EntityField.common_name, EntityField.brand):
            c, s = set(claimed.get(f)), set(shown.get(f))
            if not c or not s or c & s:
                continue
            if f is EntityField.brand and any(self.kb.same_brand([a], [b]) for a in c for b in s):
                continue
            if f is EntityField.common_name:
                resolved = set(self.kb.resolve_common_names(sorted(c | s)).values())
                if len(resolved) < len(c | s):
                    continue
            return _Cheating(True, f"the name says {f.value} {sorted(c)}, the images show {sorted(s)}")
        return _Cheating(False, None)

    async def _standardise(self, product: Product) -> Detailed[str]:
        """Noise removal from the knowledge base, then an LLM standard name if it invents nothing."""
        cleaned = self.kb.strip_noise(product.name) or product.name
        if self.clients.llm is None or not self.s.stages.llm_text:
            return Detailed(cleaned, "noise removal")
        text = (await self.clients.llm.generate(prompts.standardise(cleaned, product.cpv), max_tokens=48)).strip()
        text = text.splitlines()[0].strip() if text else ""
        source = normalise(cleaned + "".join(product.cpv.values()))
        if not text or len(text) > len(cleaned) + 40:
            return Detailed(cleaned, "noise removal; LLM name rejected (empty or too long)")
        named = self.kb.extract(text)
        invented = [v for f in EntityField for v in named.get(f) if normalise(v) not in source]
        if invented or not set(normalise(text)) <= set(source) | set(" "):
            return Detailed(cleaned, "noise removal; LLM name rejected (words not in the listing)")
        return Detailed(text, "LLM standard name")

    async def _extend(
        self, product: Product, entities: Entities, image_text: list[str], notes: list[str]
    ) -> Detailed[Entities]:
        """SI: CPV attributes, the images' text and the knowledge base's record of the common name."""
        from_cpv: dict[str, list[str]] = {}
        for key, value in product.cpv.items():
            f = CPV_FIELDS.get(key.strip().lower()) or CPV_FIELDS.get(key.strip())
            if f is None:
                continue
            if f in _FREE_TEXT_FIELDS:
                terms = self.kb.extract(value).get(f) or [value[:40]]
            elif f is EntityField.dosage_form:
                terms = self.kb.extract(value).dosage_form or [value[:20]]
            elif f is EntityField.common_name:
                terms = self.kb.extract(value).common_name or [value[:40]]
            else:
                terms = [value[:60]]
            from_cpv.setdefault(f.value, []).extend(terms)
        if from_cpv:
            entities = entities.merge(Entities(**from_cpv))
            notes.append(f"CPV: {', '.join(f'{k}={v}' for k, v in from_cpv.items())}")
        if image_text:
            shown = self.kb.extract(" ".join(image_text))
            useful = Entities(
                common_name=shown.common_name,
                brand=shown.brand,
                dosage_form=shown.dosage_form,
                specification=shown.specification,
                efficacy=shown.efficacy,
            )
            if not useful.is_empty():
                entities = entities.merge(useful)
                notes.append(f"image text: {'; '.join(image_text)[:120]}")
        entities = ground_in_knowledge(self.kb, entities, notes)
        return Detailed(entities, f"{len(notes)} sources")
