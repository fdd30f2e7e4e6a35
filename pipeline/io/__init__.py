"""Storage: every read and write (`storage`, local paths and s3:// with retries and atomic
publishing), the output layout (`layout`), the output lock (`lock`), and the readers' view of an
output: its committed shards (`committed`)."""
