"""The command-line tools over a labelled output: `verify` (the output contract), `inspect_output`
(summary and SQL), `gallery` (boxes drawn in a web page), `export` (ODVG, MDETR, COCO, GRIT), and
`sample_shards`, which writes img2dataset-layout input shards for demos and tests."""
