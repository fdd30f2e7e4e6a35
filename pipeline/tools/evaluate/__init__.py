"""`glip-evaluate`: label quality against gold (`python -m pipeline.tools.evaluate` from a checkout).

    command.py      the command line, and `evaluate_output` (an output against a gold file)
    gold.py         gold readers: Flickr30k Entities JSONL, COCO instances JSON, ODVG JSONL
    metrics.py      the pure maths: recall@k, where phrases are lost, precision against the threshold, COCO AP
    report.py       the summary text and the HTML report
    gold_shards.py  `--run`: the gold set and its images as input shards, for the normal job
"""
