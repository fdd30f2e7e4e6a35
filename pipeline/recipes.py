"""`--recipe glip|grit|yolo-world`: the settings of a published pseudo-labelling recipe.

A recipe is a set of defaults applied before the config file and the flags, so each of its values
can still be changed by its own flag; the config hash sees the resolved values. Each value below
names where it comes from; where a paper gives no number, the value is this project's choice and
says so.
"""

from __future__ import annotations

from typing import Any

# setting -> (value, source)
RECIPES: dict[str, dict[str, tuple[Any, str]]] = {
    "glip": {
        # GLIP (Li et al., CVPR 2022, arXiv 2112.03857), section 3.2: the teacher grounds the noun
        # phrases of the caption in the caption's context; boxes above 0.5 confidence become the
        # student's labels. Scores are stored from a low threshold so the 0.5 is applied when
        # training (the loader's LabelFilter(min_score=0.5)) and can change without relabelling.
        "prompt_mode": ("caption", "GLIP 3.2: the caption is the prompt (contextual grounding)"),
        "nms_scope": ("phrase", "GLIP's post-processing: NMS per phrase"),
        "box_threshold": (0.1, "stored low on purpose; GLIP trains on >= 0.5 (apply it in the loader or in SQL)"),
    },
    "grit": {
        # GRIT, the corpus of Kosmos-2 (Peng et al., arXiv 2306.14824), section 2.
        "drop_abstract_nouns": (True, "GRIT step 1: noun chunks, abstract nouns removed"),
        "nms_scope": ("image", "GRIT step 1: NMS over the boxes of all chunks (class-agnostic)"),
        "nms_iou": (0.5, "GRIT gives no IoU for its NMS: this project's choice"),
        "box_threshold": (0.65, "GRIT step 1: boxes with confidence above 0.65 are kept"),
        "min_pair_score": (0.65, "GRIT step 1: pairs without a box above 0.65 are dropped (here: marked `filtered`)"),
        "ref_exps": (True, "GRIT step 2: chunks expanded to referring expressions"),
        "phrase_audit": (True, "not GRIT: what the abstract-noun and other rules dropped, for auditing the parser"),
    },
    "yolo-world": {
        # YOLO-World (Cheng et al., CVPR 2024, arXiv 2401.17270), appendix on its CC3M pseudo labels.
        "box_threshold": (0.05, "YOLO-World: GLIP boxes at a very low threshold; the number is this project's choice"),
        "rescorer": ("openai/clip-vit-base-patch32", "YOLO-World: CLIP scores each region against its phrase; "
                                                     "the checkpoint is this project's choice (override with --rescorer)"),
        "nms_scope": ("phrase", "YOLO-World: NMS per phrase after re-scoring"),
        "nms_iou": (0.5, "YOLO-World: NMS at IoU 0.5"),
        "rescore_threshold": (0.3, "YOLO-World: boxes with a re-computed score under 0.3 are dropped"),
        "min_pair_clip": (0.3, "YOLO-World: an image is kept only if sqrt(s_img * mean(s_r)) > 0.3 (here: marked `filtered`)"),
    },
}
RECIPE_NAMES = tuple(RECIPES)


def recipe_values(name: str) -> dict[str, Any]:
    """The settings a recipe sets (the caller has checked the name)."""
    return {setting: value for setting, (value, _) in RECIPES[name].items()}


def markdown_table() -> str:
    """The README's recipe table: every value with its source."""
    lines = ["| recipe | setting | value | source |", "| --- | --- | --- | --- |"]
    for name, settings in RECIPES.items():
        for setting, (value, source) in settings.items():
            lines.append(f"| `{name}` | `{setting}` | `{value}` | {source} |")
    return "\n".join(lines) + "\n"
