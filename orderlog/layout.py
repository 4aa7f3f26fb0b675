"""How rows are spread over Cassandra partitions: the bucket counts and the bucket rules.

A bucket is crc32 of the UTF-8 id modulo the table's bucket count. Python code calls
``bucket_of``; Spark code builds the same value with ``bucket_col`` (Spark's crc32 of a
string is the crc32 of its UTF-8 bytes), so both always agree. Rejected records are
bucketed by their Kafka offset instead (``rejected_bucket_of`` / ``rejected_bucket_col``).
Changing a count moves rows: it needs a migration, never an edit.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyspark is imported only by the Spark versions of the rules, in the jobs
    from pyspark.sql import Column

# raw_orders: orders of one business date, by order_id. 1,000,000 orders a day is
# ~31,000 rows (a few MB) per partition.
RAW_ORDER_BUCKETS = 32
# user_daily_counts: users who ordered on one date, by user_id.
USER_DAY_BUCKETS = 16
# user_segments: members of one segment, by user_id. 1,000,000 users in a segment is
# ~62,500 rows per partition.
SEGMENT_BUCKETS = 16
# rejected_events: rejected records of one date, by Kafka offset modulo this count, so a
# flood of bad records from one partition (consecutive offsets) spreads over every bucket.
# 1,000,000 rejected records a day of ~300 bytes is ~31,000 rows (~10 MB) per partition.
REJECTED_BUCKETS = 32


def bucket_of(key: str, buckets: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % buckets


def bucket_col(key_col: Column, buckets: int) -> Column:
    from pyspark.sql import functions as F

    return (F.crc32(key_col.cast("binary")) % F.lit(buckets)).cast("short")


def rejected_bucket_of(kafka_offset: int) -> int:
    return kafka_offset % REJECTED_BUCKETS


def rejected_bucket_col(offset_col: Column) -> Column:
    from pyspark.sql import functions as F

    # pmod: an offset is never negative, but the rule must equal Python's % for any value.
    return F.pmod(offset_col, F.lit(REJECTED_BUCKETS)).cast("short")
