"""The one definition of every format this project writes: Parquet rows, tar records, manifests."""

from schemas.manifest import Manifest, RunRecord
from schemas.rows import (
    BOX_TYPE,
    PHRASE_TYPE,
    ROW_SCHEMA,
    SCHEMA_VERSION,
    Status,
    final_score,
    row_schema,
    row_to_json_record,
    rows_to_table,
    schema_metadata,
)

__all__ = [
    "BOX_TYPE",
    "PHRASE_TYPE",
    "ROW_SCHEMA",
    "SCHEMA_VERSION",
    "Status",
    "Manifest",
    "RunRecord",
    "final_score",
    "row_schema",
    "row_to_json_record",
    "rows_to_table",
    "schema_metadata",
]
