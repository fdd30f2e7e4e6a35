"""The output's files: its layout (`layout`), the output lock (`lock`), and the readers' view of an
output: its committed shards (`committed`). Every byte goes through the top-level `storage`
package (local paths and s3:// with retries and atomic publishing)."""
