"""Turn a caption and its phrase spans into text prompts that fit the text encoder.

Two modes: `caption` uses the caption itself (GLIP's contextual grounding);
`phrases` joins the phrases as a detection prompt ("a dog. a red frisbee."). Prompts longer
than the encoder's limit are split into several windows of whole phrases; every prompt
remembers which original phrase each of its spans is, so boxes map back to the caption.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence


@dataclasses.dataclass(frozen=True)
class Prompt:
    text: str
    spans: tuple[tuple[int, int], ...]  # character spans into `text`
    phrase_ids: tuple[int, ...]  # index of each span in the request's phrase list


def _token_offsets(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    return [tuple(o) for o in enc["offset_mapping"] if o[1] > o[0]]


def _window_prompts(
    text: str, spans: Sequence[tuple[int, int]], ids: Sequence[int], offsets: list[tuple[int, int]], budget: int
) -> list[Prompt]:
    """Greedy windows of at most `budget` tokens, each holding whole phrases where possible."""
    def first_token(pos: int) -> int:
        for i, (s, e) in enumerate(offsets):
            if e > pos:
                return i
        return len(offsets)

    def last_token(pos: int) -> int:
        idx = -1
        for i, (s, e) in enumerate(offsets):
            if s < pos:
                idx = i
        return idx

    order = sorted(range(len(spans)), key=lambda i: spans[i])
    token_ranges = {i: (first_token(spans[i][0]), last_token(spans[i][1])) for i in order}
    prompts: list[Prompt] = []
    pending = [i for i in order if token_ranges[i][0] <= token_ranges[i][1]]
    while pending:
        t0 = token_ranges[pending[0]][0]
        t_end = min(t0 + budget, len(offsets)) - 1
        members = [i for i in pending if token_ranges[i][1] <= t_end]
        if not members:  # a single phrase longer than the budget: clip it to the window
            members = [pending[0]]
        c0 = offsets[t0][0]
        c1 = offsets[t_end][1]
        local_spans = []
        for i in members:
            s, e = spans[i]
            local_spans.append((max(s, c0) - c0, min(e, c1) - c0))
        prompts.append(Prompt(text[c0:c1], tuple(local_spans), tuple(ids[i] for i in members)))
        taken = set(members)
        pending = [i for i in pending if i not in taken]
    return prompts


def build_prompts(
    caption: str, spans: Sequence[tuple[int, int]], tokenizer: Any, *, mode: str, max_tokens: int
) -> list[Prompt]:
    """Prompts for one image; `max_tokens` includes the tokenizer's special tokens."""
    if not spans:
        return []
    budget = max(1, max_tokens - tokenizer.num_special_tokens_to_add(pair=False))
    if mode == "caption":
        text, local, ids = caption, list(spans), list(range(len(spans)))
    elif mode == "phrases":
        parts, local = [], []
        pos = 0
        for s, e in spans:
            phrase = caption[s:e]
            local.append((pos, pos + len(phrase)))
            parts.append(phrase)
            pos += len(phrase) + 2
        text = ". ".join(parts) + "."
        ids = list(range(len(spans)))
    else:
        raise ValueError(f"unknown prompt mode {mode!r}; use 'caption' or 'phrases'")
    offsets = _token_offsets(tokenizer, text)
    if len(offsets) <= budget:
        return [Prompt(text, tuple(local), tuple(ids))]
    return _window_prompts(text, local, ids, offsets, budget)
