"""`glip-gallery OUTPUT --out DIR [--samples N] [--seed S] [--min-score X]`.

Writes DIR/index.html and DIR/images/: a static page of sampled labelled images, each box drawn
as an SVG overlay labelled "phrase score", the caption with its grounded phrases highlighted in
the box colours, and a filter by phrase text and score range.

Captions and phrases are hostile web text, so the page is rendered here with every text and
attribute HTML-escaped, and the script only reads data attributes and sets `hidden`/`textContent`
(no HTML is built in the browser). Opening the page needs no server: images are copied beside it
from the output tars (original bytes), under file names made from a counter, never from keys.
The initial filter can be given in the URL fragment: `index.html#phrase=dog&min=0.5&max=1`.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import sys
from pathlib import Path
from typing import Any

from pipeline.io.committed import (
    NoCommittedShards,
    complete_shards,
    image_extension,
    iter_tar_members,
    read_table,
    require_committed_shards,
)
from schemas import final_score
from storage import safe_member_name

CARD_IMAGE_PX = 344  # figure width 360 minus padding: the on-screen width of every image

PALETTE = ["#ff00aa", "#00e5ff", "#ffe600", "#7c4dff", "#00ff66", "#ff6d00", "#2979ff", "#c6ff00"]

STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
header{position:sticky;top:0;background:#fafafa;padding:8px 0;z-index:2}
header input{margin-right:12px}
.grid{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;width:360px;background:#fff;border:1px solid #ddd;padding:8px}
.frame{position:relative;width:100%;overflow:hidden}
.frame img{display:block;width:100%;height:auto}
.frame svg{position:absolute;left:0;top:0;width:100%;height:100%;overflow:hidden}
.box rect.outline{fill:none;stroke-width:3px;vector-effect:non-scaling-stroke}
.box text{font-weight:600;fill:#000;paint-order:stroke;stroke:#fff;stroke-width:3px;vector-effect:non-scaling-stroke}
figcaption{margin-top:6px;font-size:14px;line-height:1.4;word-break:break-word}
mark{padding:0 2px;border-radius:2px}
.meta{font-size:12px;color:#666;margin-top:4px;word-break:break-all}
"""

SCRIPT = """
(function () {
  "use strict";
  var phraseInput = document.getElementById("phrase");
  var minInput = document.getElementById("min");
  var maxInput = document.getElementById("max");
  var count = document.getElementById("count");
  var params = new URLSearchParams(window.location.hash.slice(1));
  if (params.has("phrase")) { phraseInput.value = params.get("phrase"); }
  if (params.has("min")) { minInput.value = params.get("min"); }
  if (params.has("max")) { maxInput.value = params.get("max"); }
  function apply() {
    var needle = phraseInput.value.trim().toLowerCase();
    var lo = parseFloat(minInput.value), hi = parseFloat(maxInput.value);
    if (isNaN(lo)) { lo = 0; }
    if (isNaN(hi)) { hi = 1; }
    var shown = 0, cards = 0;
    document.querySelectorAll("figure").forEach(function (card) {
      var visible = 0;
      card.querySelectorAll(".box").forEach(function (box) {
        var score = parseFloat(box.getAttribute("data-score"));
        var ok = score >= lo && score <= hi && box.getAttribute("data-phrase").indexOf(needle) !== -1;
        if (ok) { box.removeAttribute("display"); visible += 1; } else { box.setAttribute("display", "none"); }
      });
      card.querySelectorAll("mark").forEach(function (mark) {
        mark.style.opacity = mark.getAttribute("data-phrase").indexOf(needle) !== -1 ? "1" : "0.3";
      });
      card.hidden = needle !== "" && visible === 0;
      shown += visible;
      if (!card.hidden) { cards += 1; }
    });
    count.textContent = shown + " boxes in " + cards + " images";
    count.setAttribute("data-boxes", String(shown));
  }
  [phraseInput, minInput, maxInput].forEach(function (el) { el.addEventListener("input", apply); });
  apply();
})();
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def highlighted_caption(record: dict[str, Any]) -> str:
    """The caption, escaped, with each grounded phrase wrapped in a <mark> of its box colour."""
    caption = record["caption"]
    grounded = {b["phrase"] for b in record["boxes"]}
    parts, cursor = [], 0
    for index, phrase in sorted(enumerate(record["phrases"]), key=lambda p: p[1]["start"]):
        start, end = phrase["start"], phrase["end"]
        if index not in grounded or start < cursor:
            continue
        colour = PALETTE[index % len(PALETTE)]
        parts.append(esc(caption[cursor:start]))
        parts.append(f'<mark data-phrase="{esc(phrase["text"].lower())}" style="background:{colour}66">'
                     f"{esc(caption[start:end])}</mark>")
        cursor = end
    parts.append(esc(caption[cursor:]))
    return "".join(parts)


def card(record: dict[str, Any], image_path: str) -> str:
    """One figure: image, SVG boxes in the image's pixel frame, caption, key and status."""
    width, height = record["width"], record["height"]
    font = 12.0 * width / CARD_IMAGE_PX  # about 12 screen pixels once the image is fitted to the card
    boxes = []
    for box in sorted(record["boxes"], key=final_score):
        text = record["phrases"][box["phrase"]]["text"]
        colour = PALETTE[box["phrase"] % len(PALETTE)]
        x, y = box["x0"], box["y0"]
        w, h = box["x1"] - box["x0"], box["y1"] - box["y0"]
        label_y = y + font if y < font else y - 3
        boxes.append(
            f'<g class="box" data-phrase="{esc(text.lower())}" data-score="{final_score(box):.4f}">'
            f'<rect class="outline" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" stroke="{colour}"/>'
            f'<text x="{x + 2:.1f}" y="{label_y:.1f}" font-size="{font:.1f}">{esc(text)} {final_score(box):.2f}</text></g>'
        )
    return (
        f'<figure data-key="{esc(record["key"])}"><div class="frame">'
        f'<img src="{esc(image_path)}" width="{width}" height="{height}" alt="{esc(record["caption"][:200])}">'
        f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
        + "".join(boxes)
        + f"</svg></div><figcaption>{highlighted_caption(record)}</figcaption>"
        f'<div class="meta">{esc(record["shard"])}/{esc(record["key"])} · {esc(record["status"])} · '
        f"{len(record['boxes'])} boxes</div></figure>"
    )


def page(cards: list[str], title: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file: data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        '<header><label>phrase <input id="phrase" type="search" placeholder="substring"></label>'
        '<label>score from <input id="min" type="number" min="0" max="1" step="0.05" value="0"></label>'
        '<label>to <input id="max" type="number" min="0" max="1" step="0.05" value="1"></label>'
        f'<span id="count"></span></header><h1>{esc(title)}</h1><div class="grid">'
        + "".join(cards)
        + f"</div><script>{SCRIPT}</script></body></html>\n"
    )


def choose(output: str, samples: int, seed: int) -> dict[tuple[str, str], int]:
    """(shard, tar key) -> page position of `samples` rows picked at random among those with an image."""
    table = read_table(complete_shards(output), columns=["key", "shard", "width"]).to_pylist()
    decoded = sorted((r["shard"], r["key"]) for r in table if r["width"] is not None)
    picked = random.Random(seed).sample(decoded, min(samples, len(decoded)))
    return {(shard, safe_member_name(key)): i for i, (shard, key) in enumerate(picked)}  # keys as the tars name them


def build(output: str, out_dir: Path, samples: int = 48, seed: int = 0, min_score: float = 0.0) -> int:
    """Write the gallery; returns how many images it shows."""
    wanted = choose(output, samples, seed)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    cards: dict[int, str] = {}
    for ref in complete_shards(output):
        if not any(shard == ref.shard for shard, _ in wanted):
            continue
        for member in iter_tar_members(ref.tar_url):
            position = wanted.get((ref.shard, member["__key__"]))
            ext = image_extension(member)
            if position is None or ext is None or "json" not in member:
                continue
            record = json.loads(member["json"])
            record["boxes"] = [b for b in record["boxes"] if final_score(b) >= min_score]
            name = f"images/{position:05d}.{ext}"
            (out_dir / name).write_bytes(member[ext])
            cards[position] = card(record, name)
    title = f"{output}: {len(cards)} samples (seed {seed}, score >= {min_score})"
    (out_dir / "index.html").write_text(page([cards[i] for i in sorted(cards)], title), encoding="utf-8")
    return len(cards)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glip-gallery", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="output root (local or s3://) or pattern")
    parser.add_argument("--out", required=True, type=Path, help="directory for index.html and images/")
    parser.add_argument("--samples", type=int, default=48, help="images on the page (default 48)")
    parser.add_argument("--seed", type=int, default=0, help="which samples are drawn (default 0)")
    parser.add_argument("--min-score", type=float, default=0.0, help="boxes below this are not drawn at all (default 0)")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} is a file; give a directory for index.html and images/", file=sys.stderr)
        return 2
    try:
        require_committed_shards(args.output)
        shown = build(args.output, args.out, args.samples, args.seed, args.min_score)
    except (NoCommittedShards, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out / 'index.html'}: {shown} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
