"""The command-line tools over a labelled output: `verify` (the output contract), `inspect_output`
(summary and SQL), `gallery` (boxes drawn in a web page), `export` (ODVG, MDETR, COCO, GRIT),
`evaluate/` (label quality against gold), and `sample_shards`, which writes img2dataset-layout
input shards for demos and tests. Each is a console script (`glip-verify`, ...) and
`python -m pipeline.tools.X`."""
