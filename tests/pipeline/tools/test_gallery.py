"""`python -m pipeline.tools.gallery`: escaped HTML, copied images, and a real browser render."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from pipeline.tools.gallery import PALETTE, main
from tests.pipeline.output_fixture import HOSTILE_CAPTION, build_output, committed_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    root = tmp_path_factory.mktemp("out")
    rows = committed_rows(build_output(root, shards=2, samples=10, seed=11))
    out = tmp_path_factory.mktemp("gallery")
    assert main([str(root), "--out", str(out), "--samples", "100", "--seed", "1"]) == 0
    return root, out, [r for r in rows if r["width"] is not None]


def chromium(page: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0", *extra, page]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_every_text_is_escaped(gallery) -> None:
    _, out, rows = gallery
    text = (out / "index.html").read_text(encoding="utf-8")
    assert HOSTILE_CAPTION in [r["caption"] for r in rows]
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<script") == 1
    assert 'data-phrase="&quot;cat&quot;"' in text
    assert len(re.findall(r"<figure ", text)) == len(rows)


def test_images_are_the_original_bytes(gallery) -> None:
    root, out, rows = gallery
    originals = {}
    for tar_path in (root / "wds").glob("*.tar"):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if member.name.endswith((".jpg", ".png")):
                    originals[member.name.split(".")[0]] = tar.extractfile(member).read()
    html = (out / "index.html").read_text(encoding="utf-8")
    pairs = re.findall(r'<figure data-key="([^"]+)"><div class="frame"><img src="([^"]+)"', html)
    assert len(pairs) == len(rows)
    for key, src in pairs:
        assert (out / src).read_bytes() == originals[key]


@needs_chromium
def test_console_detection_catches_errors(tmp_path: Path) -> None:
    """The negative control: the stderr check below would see a broken page."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefined_function();</script></body></html>")
    result = chromium(bad.as_uri(), tmp_path, "--dump-dom")
    assert any("undefined_function" in line for line in console_messages(result.stderr))


@needs_chromium
@pytest.mark.parametrize("fragment", ["", "#min=0.5", "#phrase=dog", "#phrase=%22cat%22&min=0.2&max=0.9"])
def test_page_runs_cleanly_and_filters(gallery, tmp_path: Path, fragment: str) -> None:
    _, out, rows = gallery
    result = chromium((out / "index.html").as_uri() + fragment, tmp_path, "--dump-dom")
    assert result.returncode == 0
    assert console_messages(result.stderr) == []
    dom = result.stdout
    assert dom.count("<script") == 1 and "<script>alert" not in dom
    params = dict(p.split("=") for p in fragment[1:].split("&")) if fragment else {}
    needle = params.get("phrase", "").replace("%22", '"')
    lo, hi = float(params.get("min", 0)), float(params.get("max", 1))
    want = sum(1 for r in rows for b in r["boxes"]
               if lo <= round(b["score"], 4) <= hi and needle in r["phrases"][b["phrase"]]["text"].lower())
    shown = int(re.search(r'id="count" data-boxes="(\d+)"', dom).group(1))
    assert shown == want
    assert dom.count('display="none"') == sum(len(r["boxes"]) for r in rows) - want


@needs_chromium
def test_screenshot_shows_the_boxes(gallery, tmp_path: Path) -> None:
    _, out, _ = gallery
    shot = tmp_path / "shot.png"
    result = chromium((out / "index.html").as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,900")
    assert result.returncode == 0 and console_messages(result.stderr) == []
    image = Image.open(shot).convert("RGB")
    colours = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in PALETTE}
    counts = {}
    for colour, n in ((c, n) for n, c in image.getcolors(maxcolors=1 << 20)):
        if colour in colours:
            counts[colour] = n
    assert len(counts) >= 3, counts  # several phrase colours drawn
    assert sum(counts.values()) > 500  # outlines, not a stray pixel


def test_rows_with_hostile_keys_are_shown(tmp_path: Path) -> None:
    import random

    from tests.pipeline.output_fixture import make_row, write_shard

    rng = random.Random(5)
    rows = [make_row("00000", i, rng) for i in range(4)]
    for row, key in zip(rows, ["a/../../evil", "v2.final", "with space", "plain"]):
        row["key"] = key
    write_shard(tmp_path / "out", "00000", rows)
    out = tmp_path / "gallery"
    assert main([str(tmp_path / "out"), "--out", str(out), "--samples", "10"]) == 0
    assert len(list((out / "images").iterdir())) == 4
