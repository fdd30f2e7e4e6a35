"""The evaluation's summary text and its report: one self-contained HTML page with SVG plots
(no plotting library, no network: it opens anywhere), and the JSON beside it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

W, H, PAD = 420, 260, 40  # plot size and margin, in SVG units


def summary_text(result: dict[str, Any]) -> str:
    r = result
    lines = [
        f"{r['samples']} sample(s), {r['gold_phrases']} gold phrase(s) with boxes; IoU >= {r.get('iou', 0.5)}",
        "phrase grounding   R@1     R@5     R@10    upper bound",
        f"  ANY-BOX          {r['recall_at_1']:.3f}   {r['recall_at_5']:.3f}   {r['recall_at_10']:.3f}   {r['upper_bound']:.3f}",
        f"  MERGED-BOXES     {r['merged_recall_at_1']:.3f}   {r['merged_recall_at_5']:.3f}   {r['merged_recall_at_10']:.3f}   "
        f"{r['merged_upper_bound']:.3f}",
        f"where gold phrases are lost: parser missed {r['parser_miss']:.1%}, teacher missed {r['teacher_miss']:.1%}, "
        f"grounded {r['grounded']:.1%}",
    ]
    if r.get("per_type"):
        lines.append("per phrase type (ANY-BOX R@1, count):")
        lines += [f"  {t:<14} {v['recall_at_1']:.3f}  {v['count']}" for t, v in sorted(r["per_type"].items())]
    target = r.get("target_precision")
    if target is not None:
        threshold = r.get("threshold_for_target_precision")
        lines.append(f"box precision {target:.2f} " + (
            f"is reached at score >= {threshold:.2f}: recall {r['recall_at_target']:.3f}, "
            f"{r['boxes_per_sample_at_target']:.2f} boxes per sample" if threshold is not None
            else "is reached at no threshold"))
    if r.get("coco"):
        lines.append(f"COCO bbox AP {r['coco']['AP']:.3f}, AP50 {r['coco']['AP50']:.3f} (pycocotools)")
    return "\n".join(lines)


def _x(value: float) -> float:
    return PAD + value * (W - 2 * PAD)


def _y(value: float) -> float:
    return H - PAD - value * (H - 2 * PAD)


def _axes(x_label: str, y_label: str) -> str:
    ticks = "".join(
        f'<line x1="{_x(t)}" y1="{_y(0)}" x2="{_x(t)}" y2="{_y(0) + 4}" stroke="#555"/>'
        f'<text x="{_x(t)}" y="{_y(0) + 16}" font-size="10" text-anchor="middle">{t:.1f}</text>'
        f'<line x1="{_x(0) - 4}" y1="{_y(t)}" x2="{_x(0)}" y2="{_y(t)}" stroke="#555"/>'
        f'<text x="{_x(0) - 7}" y="{_y(t) + 3}" font-size="10" text-anchor="end">{t:.1f}</text>'
        for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
    return (f'<rect x="{_x(0)}" y="{_y(1)}" width="{_x(1) - _x(0)}" height="{_y(0) - _y(1)}" fill="none" stroke="#999"/>'
            f"{ticks}<text x=\"{W / 2}\" y=\"{H - 6}\" font-size=\"11\" text-anchor=\"middle\">{html.escape(x_label)}</text>"
            f"<text x=\"12\" y=\"{H / 2}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12 {H / 2})\">"
            f"{html.escape(y_label)}</text>")


def _line(points: list[tuple[float, float]], colour: str) -> str:
    path = " ".join(f"{_x(a):.1f},{_y(b):.1f}" for a, b in points)
    return f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>' if points else ""


def _svg(body: str, title: str) -> str:
    return (f'<figure><svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{html.escape(title)}">'
            f"{body}</svg><figcaption>{html.escape(title)}</figcaption></figure>")


def threshold_plot(result: dict[str, Any]) -> str:
    curve = result["threshold_curve"]
    precision = [(c["threshold"], c["precision"]) for c in curve if c["precision"] is not None]
    recall = [(c["threshold"], c["recall"]) for c in curve]
    marker = ""
    if result.get("threshold_for_target_precision") is not None:
        t = result["threshold_for_target_precision"]
        marker = f'<line x1="{_x(t)}" y1="{_y(0)}" x2="{_x(t)}" y2="{_y(1)}" stroke="#888" stroke-dasharray="4 3"/>'
    legend = ('<text x="330" y="52" font-size="11" fill="#1f77b4">precision</text>'
              '<text x="330" y="66" font-size="11" fill="#d62728">recall</text>')
    return _svg(_axes("score threshold", "box precision / recall (IoU 0.5)") + _line(precision, "#1f77b4")
                + _line(recall, "#d62728") + marker + legend, "Box precision and recall against the score threshold")


def reliability_plot(result: dict[str, Any]) -> str:
    bins = [b for b in result["reliability"] if b["precision"] is not None]
    bars = "".join(
        f'<rect x="{_x(b["lo"]) + 2}" y="{_y(b["precision"])}" width="{_x(b["hi"]) - _x(b["lo"]) - 4}" '
        f'height="{_y(0) - _y(b["precision"])}" fill="#1f77b4" opacity="0.7"><title>{b["boxes"]} boxes</title></rect>'
        for b in bins)
    diagonal = f'<line x1="{_x(0)}" y1="{_y(0)}" x2="{_x(1)}" y2="{_y(1)}" stroke="#888" stroke-dasharray="4 3"/>'
    return _svg(_axes("box score", "precision of the boxes in the bin") + bars + diagonal,
                "Reliability: precision per score bin (the dashed line is a calibrated score)")


def write_report(result: dict[str, Any], out_dir: Path, title: str) -> Path:
    """`out_dir/index.html` (text summary and plots) and `out_dir/evaluation.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    page = ("<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" "
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title><style>body{{font:14px sans-serif;margin:2em}}"
            "pre{background:#f6f6f6;padding:1em}figure{display:inline-block;margin:1em}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><pre>{html.escape(summary_text(result))}</pre>"
            f"{threshold_plot(result)}{reliability_plot(result)}</body></html>\n")
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
