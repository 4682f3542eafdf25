"""Prompts as DeepSeek-R1 evaluates: the problem followed by R1's instruction, through the model's chat
template (or a raw text template), and the part of the assistant turn a template pre-fills.

Some chat templates (DeepSeek-R1 and its distilled students) end the generation prompt with an opened
``<think>``; the model then writes the reasoning without the opening tag. ``Prompt.prefill`` keeps that
pre-opened text so that ``prefill + completion`` is the whole assistant turn, and ``answer_region`` then
looks for the final answer after ``</think>`` in either case.
"""
from __future__ import annotations

from dataclasses import dataclass

R1_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_INSTRUCTION = ("Please reason step by step, then write the complete Python function (with its signature "
                    "and any imports it needs) in one ```python code block.")

# Raw (no chat template) templates by name; a custom one is any string with a {problem} field.
RAW_TEMPLATES = {
    "raw": "Problem: {problem}\n\nSolution:",
    # DeepSeek-R1-Zero's training template (R1 paper, Table 1).
    "r1zero": ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
               "The assistant first thinks about the reasoning process in the mind and then provides the user "
               "with the answer. The reasoning process and answer are enclosed within <think> </think> and "
               "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
               "<answer> answer here </answer>. User: {problem}. Assistant:"),
}

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass
class Prompt:
    text: str            # what the model is fed
    ids: list[int]       # its token ids
    prefill: str = ""    # assistant text the template already wrote (e.g. "<think>\n"); part of the response


def user_message(problem: str, instruction: str | None = R1_INSTRUCTION) -> str:
    """R1 puts the instruction after the problem, in the user turn (no system prompt)."""
    return f"{problem}\n{instruction}" if instruction else problem


def answer_region(response: str) -> str:
    """Where the final answer is looked for: after the last ``</think>`` if the response has one, else all of it."""
    i = response.rfind(THINK_CLOSE)
    return response[i + len(THINK_CLOSE):] if i >= 0 else response


class PromptBuilder:
    """Turns problems into prompts for one tokenizer.

    template: "auto" (chat template if the tokenizer has one, else "raw"), "chat", a name in RAW_TEMPLATES,
    or a custom string containing ``{problem}`` (the problem with the instruction appended).
    think: "auto"/False (use the template as it is, noting a pre-opened <think>), or True (make sure the
    assistant turn starts with "<think>\\n", as R1 recommends for its models).
    """

    def __init__(self, tokenizer, template: str = "auto", system: str | None = None, think="auto"):
        self.tok = tokenizer
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if template == "auto":
            template = "chat" if has_chat else "raw"
        if template == "chat" and not has_chat:
            raise ValueError("prompt template 'chat': the tokenizer has no chat_template; use --template raw "
                             "(or r1zero, or a string with {problem})")
        if template != "chat" and template not in RAW_TEMPLATES and "{problem}" not in template:
            raise ValueError(f"prompt template {template!r}: expected 'auto', 'chat', one of "
                             f"{sorted(RAW_TEMPLATES)} or a string containing {{problem}}")
        self.template, self.system, self.think = template, system, think

    def __call__(self, problem: str, instruction: str | None = R1_INSTRUCTION) -> Prompt:
        msg = user_message(problem, instruction)
        if self.template == "chat":
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + \
                       [{"role": "user", "content": msg}]
            text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            add_special = False     # the template wrote BOS itself if it wants one
        else:
            tpl = RAW_TEMPLATES.get(self.template, self.template)
            text = tpl.replace("{problem}", msg)
            add_special = True
        prefill = ""
        stripped = text.rstrip()
        if stripped.endswith(THINK_OPEN):
            prefill = text[stripped.rfind(THINK_OPEN):]
        elif self.think is True:
            prefill = THINK_OPEN + "\n"
            text = text + prefill
        ids = self.tok(text, add_special_tokens=add_special)["input_ids"]
        return Prompt(text=text, ids=list(ids), prefill=prefill)
