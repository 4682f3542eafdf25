"""Non-reasoning requests (echo, formatting, small facts) for the blended SFT stage.

R1 kept ~200k non-reasoning samples in its second SFT so the model stays a usable assistant; these are
their toy version. Responses carry an empty think block (`<think>\n</think>`) and the reply in <answer>,
so one format covers every sample. difficulty is ignored beyond choosing longer inputs.
"""
from __future__ import annotations

from r1lab.tasks.base import r1_format

WORDS = ["river", "stone", "cloud", "maple", "ember", "harbor", "lantern", "meadow", "copper", "violet",
         "orbit", "canyon", "willow", "falcon", "summit", "breeze", "garnet", "tundra", "pepper", "quartz"]
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa",
            "Egypt": "Cairo", "Norway": "Oslo", "India": "New Delhi", "Chile": "Santiago", "Spain": "Madrid",
            "Italy": "Rome", "Ghana": "Accra", "Cuba": "Havana", "Nepal": "Kathmandu", "Poland": "Warsaw"}


def make(rng, d: int):
    kind = rng.choice(["echo", "upper", "reverse_words", "capital", "count_words", "join"])
    ws = rng.sample(WORDS, k=min(2 + d, len(WORDS)))
    text = " ".join(ws)
    if kind == "echo":
        q, a = f"Repeat exactly: {text}", text
    elif kind == "upper":
        q, a = f"Write this in uppercase: {text}", text.upper()
    elif kind == "reverse_words":
        q, a = f"Reverse the order of these words: {text}", " ".join(reversed(ws))
    elif kind == "capital":
        country = rng.choice(sorted(CAPITALS))
        q, a = f"What is the capital of {country}?", CAPITALS[country]
    elif kind == "count_words":
        q, a = f"How many words are in: {text}", str(len(ws))
    else:
        q, a = f"Join these words with dashes: {text}", "-".join(ws)
    return {"key": q, "prompt": q, "answer": a, "solution": r1_format("", a).replace("<think>\n\n</think>", "<think>\n</think>")}
