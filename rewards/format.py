"""Format and length rewards, each one small registered function with TRL's signature.

- think_format: DeepSeek-R1's `<think>...</think><answer>...</answer>` (1/0); the opening `<think>` may be
  in the prompt, as when the chat template ends the generation prompt with it.
- tag_count: 0.25 for each of the four tags present exactly once (a dense shaping signal).
- language_consistency: share of the letters in the reasoning that are in the target script (R1's
  language-consistency reward); the target comes from column `language` or else the prompt's script.
- overlong_penalty: DAPO's soft overlong punishment: 0 up to max_length - cache_length, then falling
  linearly to -1 at max_length, -1 beyond.
- cosine_length: "Demystifying Long CoT" cosine length scaling of correctness: short right answers get
  the most, short wrong answers are punished the most.
Lengths are in tokens when TRL passes `completion_ids`, else in characters.
"""

from __future__ import annotations

import math
import re
import unicodedata

from rewards.registry import completion_texts, register

_R1 = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _prompt_texts(prompts, n: int) -> list[str]:
    return completion_texts(prompts) if prompts is not None else [""] * n


def _opened_think(prompt: str, text: str) -> str:
    """Put back the `<think>` a chat template already wrote at the end of the prompt."""
    if prompt.rstrip().endswith("<think>") and not text.lstrip().startswith("<think>"):
        return "<think>" + text
    return text


def _well_formed(text: str) -> bool:
    m = _R1.fullmatch(text)
    return bool(m) and all(text.count(t) == 1 for t in _TAGS) and m.group(2).strip() != ""


@register("think_format")
def think_format(completions, prompts=None, **columns) -> list[float]:
    """1.0 for exactly `<think>...</think><answer>...</answer>` (prompt may have opened <think>), else 0.0."""
    texts, ptexts = completion_texts(completions), _prompt_texts(prompts, len(completions))
    return [float(_well_formed(_opened_think(p, t))) for p, t in zip(ptexts, texts)]


@register("tag_count")
def tag_count(completions, prompts=None, **columns) -> list[float]:
    """0.25 for each of <think>, </think>, <answer>, </answer> that appears exactly once."""
    texts, ptexts = completion_texts(completions), _prompt_texts(prompts, len(completions))
    return [sum(0.25 for tag in _TAGS if _opened_think(p, t).count(tag) == 1) for p, t in zip(ptexts, texts)]


_LANG_SCRIPT = {"en": "LATIN", "fr": "LATIN", "de": "LATIN", "es": "LATIN", "it": "LATIN", "pt": "LATIN",
                "zh": "CJK", "ja": "CJK", "ko": "HANGUL", "ru": "CYRILLIC", "uk": "CYRILLIC", "ar": "ARABIC",
                "he": "HEBREW", "el": "GREEK", "hi": "DEVANAGARI", "th": "THAI"}


def script_of(ch: str) -> str | None:
    """Script of a letter (LATIN, CJK, CYRILLIC, ...); None for non-letters. Kana counts as CJK."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK", "HIRAGANA", "KATAKANA")):
        return "CJK"
    return name.split(" ")[0] if name else None


def script_shares(text: str) -> dict[str, float]:
    counts: dict[str, int] = {}
    for ch in text:
        s = script_of(ch)
        if s:
            counts[s] = counts.get(s, 0) + 1
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def _target_script(language, prompt: str) -> str | None:
    if language:
        lang = str(language).lower()
        return _LANG_SCRIPT.get(lang.split("-")[0], str(language).upper())
    shares = script_shares(prompt)
    return max(shares, key=shares.get) if shares else None


@register("language_consistency")
def language_consistency(completions, prompts=None, language=None, **columns) -> list[float | None]:
    """Share of the reasoning's letters in the target script (column `language`, else the prompt's)."""
    texts, ptexts = completion_texts(completions), _prompt_texts(prompts, len(completions))
    langs = language if isinstance(language, (list, tuple)) else [language] * len(texts)
    out: list[float | None] = []
    for t, p, lang in zip(texts, ptexts, langs):
        m = re.search(r"<think>(.*?)(?:</think>|$)", _opened_think(p, t), re.DOTALL)
        target, shares = _target_script(lang, p), script_shares(m.group(1) if m else t)
        out.append(None if target is None else (shares.get(target, 0.0) if shares else 0.0))
    return out


def _lengths(completions, completion_ids) -> list[int]:
    if completion_ids is not None:
        return [len(ids) for ids in completion_ids]
    return [len(t) for t in completion_texts(completions)]


def overlong(length: int, max_length: int, cache_length: int) -> float:
    """DAPO's soft overlong punishment for one length."""
    if length <= max_length - cache_length:
        return 0.0
    if length <= max_length:
        return ((max_length - cache_length) - length) / cache_length
    return -1.0


@register("overlong_penalty")
def overlong_penalty(completions, completion_ids=None, max_length: int = 1024, cache_length: int = 256,
                     **columns) -> list[float]:
    """DAPO soft overlong penalty: 0 until max_length-cache_length, linear to -1 at max_length."""
    return [overlong(n, max_length, cache_length) for n in _lengths(completions, completion_ids)]


def cosine_scale(length: int, correct: bool, max_length: int, right=(0.5, 1.0), wrong=(-0.5, -1.0)) -> float:
    """Cosine from the short-length value (right[1] / wrong[1]) to the long-length value (right[0] / wrong[0])."""
    long_value, short_value = right if correct else wrong
    progress = min(length, max_length) / max_length
    return long_value + 0.5 * (short_value - long_value) * (1.0 + math.cos(progress * math.pi))


@register("cosine_length")
def cosine_length(completions, answer=None, completion_ids=None, max_length: int = 1024,
                  **columns) -> list[float | None]:
    """Correctness (math_accuracy on column `answer`) scaled by length with a cosine: short-right best."""
    from rewards.math import math_accuracy

    correct = math_accuracy(completions, answer=answer)
    lengths = _lengths(completions, completion_ids)
    return [None if c is None else cosine_scale(n, c == 1.0, max_length) for c, n in zip(correct, lengths)]
