"""The one lone-surrogate check shared by the HTTP edge and the batch CLI."""

from armed.text import invalid_unicode_path


def test_finds_the_first_bad_field_with_its_path() -> None:
    assert invalid_unicode_path({"query": "ok", "product": {"name": "x\ud800", "images": []}}) == "product.name"
    assert invalid_unicode_path({"pairs": [{"query": "a"}, {"query": "\udc00"}]}) == "pairs[1].query"
    assert invalid_unicode_path("\ud83d") == "input"


def test_valid_text_passes_including_astral_characters() -> None:
    assert invalid_unicode_path({"query": "布洛芬 😀", "n": 3, "x": None}) is None
