"""Pure transformations of the nightly aggregate (DataFrame -> DataFrame, no I/O).

Every value the job writes is an absolute function of the orders of date D and the
per-user daily counts of the other aggregated dates, never ``old + delta``: a re-run, a
backfill or a re-run after a crash computes the same rows again and overwrites them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from orderlog.business_day import HOURS_OF_DAY
from orderlog.layout import SEGMENT_BUCKETS, USER_DAY_BUCKETS, bucket_col
from orderlog.menu import JAPANESE, MENU_TYPES, SEGMENTS, WESTERN, preference_col


def filter_valid_orders(orders: DataFrame) -> DataFrame:
    """Orders that can be counted: a user and a canonical menu type (the streaming job
    writes only those; a row from another writer must not crash the night)."""
    return orders.filter(F.col("user_id").isNotNull() & F.col("menu_type").isin(*MENU_TYPES))


def _orders_by_hour(menu: str) -> Column:
    """An aggregate: the orders of menu in each business hour, as an array indexed by hour
    (an hour outside 0..23, or none, counts in no hour)."""
    of_menu = F.col("menu_type") == menu
    return F.array(
        *[F.count(F.when(of_menu & (F.col("hour") == hour), 1)) for hour in range(HOURS_OF_DAY)]
    ).cast("array<int>")


def user_day_counts(orders: DataFrame) -> DataFrame:
    """C_D(u): each user's Japanese and Western orders among the given orders of one day,
    and the same per business hour (``*_by_hour``: 24 counts). The hours ride on the
    per-user grouping so that the day's hourly totals come from the one materialized frame
    of the day (``day_figures``), without another pass over the orders."""
    return (
        orders.transform(filter_valid_orders)
        .groupBy("user_id")
        .agg(
            F.sum(F.when(F.col("menu_type") == JAPANESE, 1).otherwise(0)).cast("int").alias("japanese"),
            F.sum(F.when(F.col("menu_type") == WESTERN, 1).otherwise(0)).cast("int").alias("western"),
            _orders_by_hour(JAPANESE).alias("japanese_by_hour"),
            _orders_by_hour(WESTERN).alias("western_by_hour"),
        )
    )


def old_and_new_counts(old_counts: DataFrame, new_counts: DataFrame) -> DataFrame:
    """One row per touched user (stored for the day, or ordering on it): its stored counts
    of the day (old_*, null when none) and its new ones (new_*, null when none). The job
    materializes this one frame, so old, new and touched users come from one Spark job."""
    old = old_counts.select(
        "user_id", F.col("japanese").alias("old_japanese"), F.col("western").alias("old_western")
    )
    new = new_counts.select(
        "user_id",
        F.col("japanese").alias("new_japanese"),
        F.col("western").alias("new_western"),
        F.col("japanese_by_hour").alias("new_japanese_by_hour"),
        F.col("western_by_hour").alias("new_western_by_hour"),
    )
    return old.join(new, on="user_id", how="full")


def new_counts_of(day_counts: DataFrame) -> DataFrame:
    """The day's counts from its orders (user_id, japanese, western)."""
    return day_counts.filter(F.col("new_japanese").isNotNull()).select(
        "user_id", F.col("new_japanese").alias("japanese"), F.col("new_western").alias("western")
    )


def _summed_by_hour(name: str) -> Column:
    """An aggregate: the per-hour arrays of column name summed hour by hour (0 when none)."""
    return F.array(
        *[F.coalesce(F.sum(F.col(name)[hour]), F.lit(0)) for hour in range(HOURS_OF_DAY)]
    ).cast("array<bigint>")


def day_figures(day_counts: DataFrame, day: date) -> DataFrame:
    """One row for the day: the summary (zeros when nobody ordered: a global aggregate
    always yields a row), its orders per business hour (``*_by_hour``, 24 counts each), the
    touched users and the stale ones (stored, no order left)."""
    ordered = F.col("new_japanese").isNotNull()
    return day_counts.agg(
        F.coalesce(F.sum("new_japanese"), F.lit(0)).cast("long").alias("japanese"),
        F.coalesce(F.sum("new_western"), F.lit(0)).cast("long").alias("western"),
        F.count(F.when(ordered, 1)).cast("long").alias("users"),
        F.count("user_id").cast("long").alias("touched"),
        F.count(F.when(~ordered, 1)).cast("long").alias("stale"),
        _summed_by_hour("new_japanese_by_hour").alias("japanese_by_hour"),
        _summed_by_hour("new_western_by_hour").alias("western_by_hour"),
    ).select(
        F.lit(day.year).alias("year"),
        F.lit(day).alias("order_date"),
        "japanese",
        "western",
        (F.col("japanese") + F.col("western")).alias("total"),
        "users",
        "touched",
        "stale",
        "japanese_by_hour",
        "western_by_hour",
    )


def hourly_rows(figures: Mapping[str, object]) -> list[dict[str, object]]:
    """hourly_order_counts rows of a day from its figures: all 24 hours, zeros included,
    so that a re-run overwrites every hour (an hour whose orders vanished becomes 0)."""
    day = figures["order_date"]
    japanese, western = figures["japanese_by_hour"], figures["western_by_hour"]
    return [
        {"year": day.year, "order_date": day, "hour": hour,  # type: ignore[attr-defined]
         "japanese": int(japanese[hour]), "western": int(western[hour])}  # type: ignore[index]
        for hour in range(HOURS_OF_DAY)
    ]


def with_user_day_keys(counts: DataFrame, day: date) -> DataFrame:
    """The rows of user_daily_counts / user_daily_history for day."""
    return counts.select(
        F.lit(day).alias("order_date"),
        F.lit(day.year).alias("year"),
        bucket_col(F.col("user_id"), USER_DAY_BUCKETS).alias("bucket"),
        "user_id",
        F.col("japanese").cast("int").alias("japanese"),
        F.col("western").cast("int").alias("western"),
    )


def stale_users(day_counts: DataFrame) -> DataFrame:
    """Users stored for the day who no longer have an order on it."""
    return day_counts.filter(F.col("new_japanese").isNull()).select("user_id")


def merge_day_into_history(history: DataFrame, new_counts: DataFrame, day: date) -> DataFrame:
    """The touched users' daily counts with day's stored counts replaced by the new ones."""
    kept = history.filter(F.col("order_date") != F.lit(day)).select(
        "user_id", "order_date", "japanese", "western"
    )
    fresh = new_counts.select("user_id", F.lit(day).alias("order_date"), "japanese", "western")
    return kept.unionByName(fresh)


def with_segment_transitions(timeline: DataFrame) -> DataFrame:
    """Cumulative counts after each of a user's dates and the segment before and after it
    (before is null on the user's first date: the user enters a segment)."""
    by_user = Window.partitionBy("user_id").orderBy("order_date")
    running = by_user.rowsBetween(Window.unboundedPreceding, 0)
    whole = by_user.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    cum_j = F.sum("japanese").over(running).cast("long")
    cum_w = F.sum("western").over(running).cast("long")
    staged = (
        timeline.withColumn("cum_japanese", cum_j)
        .withColumn("cum_western", cum_w)
        # In the same window pass: user_preferences is then a filter, not another shuffle.
        .withColumn("first_order_date", F.min("order_date").over(whole))
        .withColumn("last_order_date", F.max("order_date").over(whole))
    )
    before_j = F.col("cum_japanese") - F.col("japanese")
    before_w = F.col("cum_western") - F.col("western")
    return staged.select(
        "user_id",
        "order_date",
        "japanese",
        "western",
        "cum_japanese",
        "cum_western",
        F.when(before_j + before_w > 0, preference_col(before_j, before_w)).alias("segment_before"),
        preference_col(F.col("cum_japanese"), F.col("cum_western")).alias("segment_after"),
        "first_order_date",
        "last_order_date",
    )


def transition_rows(transitions: DataFrame, day: date) -> DataFrame:
    """Rows of user_segment_transitions for day and every later date of the touched users."""
    return transitions.filter(F.col("order_date") >= F.lit(day)).select(
        "order_date",
        bucket_col(F.col("user_id"), USER_DAY_BUCKETS).alias("bucket"),
        "user_id",
        "segment_before",
        "segment_after",
    )


def user_preferences(transitions: DataFrame) -> DataFrame:
    """Cumulative counts, preference and first/last order date of each touched user: the
    row of its last date, whose cumulative counts are the totals (no shuffle)."""
    return transitions.filter(F.col("order_date") == F.col("last_order_date")).select(
        "user_id",
        F.col("cum_japanese").alias("japanese"),
        F.col("cum_western").alias("western"),
        F.col("segment_after").alias("preference"),
        "first_order_date",
        "last_order_date",
        F.current_timestamp().alias("updated_at"),
    )


def segment_rows(preferences: DataFrame) -> DataFrame:
    """Rows of user_segments: each user in the segment of its preference, with its total
    orders and last order date (what the viewer's audience filters and its ranking read,
    through the table's indexes)."""
    return preferences.select(
        F.col("preference").alias("segment"),
        bucket_col(F.col("user_id"), SEGMENT_BUCKETS).alias("bucket"),
        "user_id",
        "japanese",
        "western",
        (F.col("japanese") + F.col("western")).alias("orders"),
        "last_order_date",
    )


def segment_deletions(preferences: DataFrame, day_counts: DataFrame, *, all_but_new_segment: bool) -> DataFrame:
    """user_segments rows (segment, bucket, user_id) that must go.

    Normally the stored segment is the preference of the cumulative counts with the day's
    old contribution (new total - new C_D + old C_D): it is deleted when it differs from
    the new one. After a crash the stored rows may be from either state, so
    ``all_but_new_segment`` deletes the user from every segment but the new one (tombstones
    only in that rare case). A user left with no order at all leaves every segment."""
    counts = day_counts.select(
        "user_id",
        F.col("old_japanese").alias("old_j"),
        F.col("old_western").alias("old_w"),
        F.col("new_japanese").alias("new_j"),
        F.col("new_western").alias("new_w"),
    )
    prefs = preferences.select("user_id", "japanese", "western", "preference")
    joined = counts.join(prefs, on="user_id", how="left").fillna(
        0, subset=["japanese", "western", "old_j", "old_w", "new_j", "new_w"]
    )
    if all_but_new_segment:
        candidates = joined.select("user_id", "preference", F.explode(F.array(*map(F.lit, SEGMENTS))).alias("segment"))
    else:
        prior_j = F.col("japanese") - F.col("new_j") + F.col("old_j")
        prior_w = F.col("western") - F.col("new_w") + F.col("old_w")
        candidates = joined.select(
            "user_id",
            "preference",
            F.when(prior_j + prior_w > 0, preference_col(prior_j, prior_w)).alias("segment"),
        )
    gone = F.col("segment").isNotNull() & (
        F.col("preference").isNull() | (F.col("segment") != F.col("preference"))
    )
    return candidates.filter(gone).select(
        "segment", bucket_col(F.col("user_id"), SEGMENT_BUCKETS).alias("bucket"), "user_id"
    )


def segment_movements(transitions: DataFrame) -> DataFrame:
    """Per date and segment: users who entered it and users who left it on that date."""
    moved = transitions.filter(
        F.col("segment_before").isNull() | (F.col("segment_before") != F.col("segment_after"))
    )
    entered = moved.groupBy("order_date", F.col("segment_after").alias("segment")).agg(
        F.count("*").alias("entered")
    )
    exited = (
        moved.filter(F.col("segment_before").isNotNull())
        .groupBy("order_date", F.col("segment_before").alias("segment"))
        .agg(F.count("*").alias("exited"))
    )
    return (
        entered.join(exited, on=["order_date", "segment"], how="full")
        .fillna(0, subset=["entered", "exited"])
        .select("order_date", "segment", F.col("entered").cast("long"), F.col("exited").cast("long"))
    )


def segment_size_rows(
    base_sizes: Mapping[str, int],
    dates: Iterable[date],
    movements: Mapping[tuple[date, str], tuple[int, int]],
) -> list[dict[str, object]]:
    """segment_sizes rows for consecutive aggregated dates (ascending), starting from the
    sizes after the aggregated date before the first of them: size = previous + entered
    - exited. Plain Python: at most three rows per date."""
    sizes = {s: int(base_sizes.get(s, 0)) for s in SEGMENTS}
    rows: list[dict[str, object]] = []
    for day in sorted(dates):
        for segment in SEGMENTS:
            entered, exited = movements.get((day, segment), (0, 0))
            sizes[segment] += entered - exited
            rows.append(
                {
                    "year": day.year,
                    "as_of": day,
                    "segment": segment,
                    "users": sizes[segment],
                    "entered": entered,
                    "exited": exited,
                }
            )
    return rows
