"""Feed loader batches to `transformers`' GroundingDinoForObjectDetection and its own loss.

What the installed loss needs (transformers 5.x, `loss/loss_grounding_dino.py`):
- `labels[i]["boxes"]`: normalised cxcywh, exactly the loader's `targets[i]["boxes"]`.
- `labels[i]["class_labels"]`: not a vocabulary id nor a phrase index but the index of a *label
  group*: the model splits `input_ids` at its hard-coded delimiter ids (101 [CLS], 102 [SEP],
  1012 ".", 1029 "?" and 0 [PAD], bert-base-uncased's) and numbers the runs of tokens between
  them. A box's class label is the group its positive tokens fall in. With the loader's
  `TextConfig(prompt="phrases")` every distinct phrase is its own group (GLIP's detection prompt);
  with the caption as prompt a group is a whole sentence, which supervises coarser than GLIP's
  positive map (use a custom loss on `positive_map` for contextual grounding).
- Batches: the installed loss offsets sample i's class labels by the size of sample i's own label
  map instead of the running total of the previous ones, which is only right when every sample
  has the same number of groups. `per_sample_loss` evaluates the same loss sample by sample and
  averages, which sidesteps that without changing what is computed for one sample.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def delimiter_ids() -> list[int]:
    """The ids Grounding DINO's modelling code treats as group delimiters (plus [PAD] = 0)."""
    from transformers.models.grounding_dino.modeling_grounding_dino import SPECIAL_TOKENS

    return [*SPECIAL_TOKENS, 0]


def check_tokenizer(tokenizer: Any) -> None:
    """Fail early when a tokenizer's specials do not sit at the ids the model hard-codes."""
    from transformers.models.grounding_dino.modeling_grounding_dino import SPECIAL_TOKENS

    cls_id, sep_id, dot_id, question_id = SPECIAL_TOKENS
    found = {
        "[CLS]": (tokenizer.cls_token_id, cls_id),
        "[SEP]": (tokenizer.sep_token_id, sep_id),
        ".": (tokenizer.convert_tokens_to_ids("."), dot_id),
        "?": (tokenizer.convert_tokens_to_ids("?"), question_id),
        "[PAD]": (tokenizer.pad_token_id, 0),
    }
    wrong = {tok: got for tok, (got, want) in found.items() if got != want}
    if wrong:
        raise ValueError(f"tokenizer ids {wrong} differ from Grounding DINO's hard-coded {found}")


def grounding_dino_labels(batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """`labels` for GroundingDinoForObjectDetection from a collated loader batch.

    Boxes whose positive tokens all lie on delimiters are dropped; when a box's tokens straddle
    groups (a phrase containing "."), the group holding most of them wins.
    """
    input_ids = batch["input_ids"]
    is_delimiter = torch.isin(input_ids, torch.tensor(delimiter_ids()))
    groups = torch.cumsum(is_delimiter.long(), dim=1) * (~is_delimiter).long()
    labels = []
    for i, target in enumerate(batch["targets"]):
        numbered = {int(g): k for k, g in enumerate(g for g in torch.unique(groups[i]).tolist() if g > 0)}
        positive = target["positive_map"][:, : input_ids.shape[1]]
        classes, keep = [], []
        for b, row in enumerate(positive):
            hit = groups[i][row]
            hit = hit[hit > 0]
            if len(hit):
                classes.append(numbered[int(torch.mode(hit).values)])
                keep.append(b)
        labels.append(
            {"class_labels": torch.tensor(classes, dtype=torch.long), "boxes": target["boxes"][keep].float()}
        )
    return labels


def per_sample_loss(loss_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap Grounding DINO's loss function to evaluate it one sample at a time (see module doc)."""

    def loss(logits, labels, device, pred_boxes, config, label_maps, text_mask, outputs_class=None,
             outputs_coord=None, encoder_logits=None, encoder_pred_boxes=None):  # noqa: ANN001, ANN202
        totals, dicts = [], []
        for i in range(logits.shape[0]):
            s = slice(i, i + 1)
            value, parts, _ = loss_fn(
                logits[s], labels[s], device, pred_boxes[s], config, label_maps[s], text_mask[s],
                outputs_class=None if outputs_class is None else outputs_class[:, s],
                outputs_coord=None if outputs_coord is None else outputs_coord[:, s],
                encoder_logits=None if encoder_logits is None else encoder_logits[s],
                encoder_pred_boxes=None if encoder_pred_boxes is None else encoder_pred_boxes[s],
            )
            totals.append(value)
            dicts.append(parts)
        mean = {k: torch.stack([d[k] for d in dicts]).mean() for k in dicts[0]}
        return torch.stack(totals).mean(), mean, None

    return loss


def use_per_sample_loss(model: Any) -> Any:
    """Install `per_sample_loss` around the model's own loss function; returns the model."""
    model.loss_function = per_sample_loss(model.loss_function)
    return model
