"""CLIP as the rescorer of any teacher's boxes (`rescore.py`, YOLO-World's recipe: `--rescorer`),
and `tiny.py`, which writes the tiny random CLIP checkpoint the tests use."""
