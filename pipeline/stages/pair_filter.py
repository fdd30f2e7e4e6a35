"""Pair-level filters: a pair that fails one keeps its row (and its boxes) with status `filtered`
and the reason in `error`. Never a dropped row: a user can always see, count and undo the
filter in SQL.

- `min_box_score` (GRIT: 0.65): the pair has no box scoring at least this.
- `min_pair_clip` (YOLO-World: 0.3): sqrt(image_text_score * mean clip_score of its boxes) is
  below it, from the CLIP rescorer; a pair with no box left after re-scoring fails it too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from schemas import Status, final_score
from teacher.clip.rescore import image_confidence


@dataclasses.dataclass(frozen=True)
class PairRules:
    min_box_score: float | None = None
    min_pair_clip: float | None = None


def apply_pair_rules(rows: list[dict[str, Any]], rules: PairRules) -> int:
    """Mark the `ok` rows that fail a rule as `filtered`; returns how many were."""
    filtered = 0
    for row in rows:
        if row["status"] != Status.OK.value:
            continue
        why = _failed_rule(row, rules)
        if why:
            row.update(status=Status.FILTERED.value, error=why)
            filtered += 1
    return filtered


def _failed_rule(row: dict[str, Any], rules: PairRules) -> str | None:
    boxes = row.get("boxes") or []
    if rules.min_box_score is not None:
        best = max((final_score(b) for b in boxes), default=None)
        if best is None or best < rules.min_box_score:
            shown = "no box" if best is None else f"its best box scores {best:.3f}"
            return f"{shown}, under --min-pair-score {rules.min_box_score}"
    if rules.min_pair_clip is not None:
        clip = [b["clip_score"] for b in boxes if b.get("clip_score") is not None]
        image = row.get("image_text_score")
        if not clip or image is None:
            return f"no box left after CLIP re-scoring (--min-pair-clip {rules.min_pair_clip})"
        pair = image_confidence(max(image, 0.0), clip)
        if pair < rules.min_pair_clip:
            return (f"sqrt(image_text_score {image:.3f} x mean clip_score {sum(clip) / len(clip):.3f}) = {pair:.3f}, "
                    f"under --min-pair-clip {rules.min_pair_clip}")
    return None
