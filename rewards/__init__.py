"""Rule-based rewards (math, code, format) with TRL's signature, and their registry.

    import rewards
    fn = rewards.get_reward("math_accuracy")          # or "pkg.mod:fn", "path/file.py:fn", an entry point
    fn(completions, answer=[...])                     # -> list[float | None]
    total = rewards.combine({"math_accuracy": 1.0, "think_format": 0.2})
"""

from rewards.registry import (
    RewardError,
    combine,
    completion_texts,
    describe,
    get_reward,
    last_reasons,
    list_rewards,
    register,
)
from rewards import code as _code  # noqa: F401,E402  (registers code_tests)
from rewards import format as _format  # noqa: F401,E402  (registers the format and length rewards)
from rewards import math as _math  # noqa: F401,E402  (registers math_accuracy)

__all__ = ["register", "get_reward", "list_rewards", "combine", "describe", "last_reasons",
           "completion_texts", "RewardError"]
