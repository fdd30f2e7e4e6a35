"""The stages of one shard, in order, all pure (no Ray): `inputs` lists the input shards;
`reader` streams a shard's samples; `prepare` parses captions (`parsers`), decodes and resizes
images (`images`) and groups them into teacher batches (`batching`); the teacher fills in boxes;
`write` publishes the shard's Parquet, tar and manifest."""
