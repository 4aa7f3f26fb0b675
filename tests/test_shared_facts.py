"""The shared facts: configuration, menu types, preference, business day and buckets.
Where a rule exists both in Python and as a Spark column, both must agree."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderlog.business_day import business_date, business_hour, date_range, yesterday
from orderlog.config import ConfigError, load_settings
from orderlog.layout import RAW_ORDER_BUCKETS, REJECTED_BUCKETS, SEGMENT_BUCKETS, bucket_of, rejected_bucket_of
from orderlog.menu import EVEN, JAPANESE, WESTERN, canonical_menu_type, preference

TOKYO = "Asia/Tokyo"


def test_defaults_run_locally():
    settings = load_settings(environ={})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.topic == "order-logs"
    assert settings.cassandra.host_list == ["127.0.0.1"]
    assert settings.cassandra.port == 9042
    assert settings.cassandra.keyspace == "orderlog"
    assert settings.business.timezone == TOKYO
    assert (settings.ingest.port, settings.viewer.port) == (8080, 8081)
    assert settings.cassandra.consistency == "LOCAL_QUORUM"
    assert settings.kafka.min_insync_replicas == 1


def test_rejected_records_are_kept_30_days_unless_configured():
    assert load_settings(environ={}).rejected.ttl_seconds == 30 * 86_400
    assert load_settings(environ={"ORDERLOG_REJECTED_TTL_DAYS": "7"}).rejected.ttl_seconds == 7 * 86_400


def test_rejected_buckets_spread_consecutive_offsets_over_every_bucket():
    flood = [rejected_bucket_of(offset) for offset in range(1000, 1000 + 10 * REJECTED_BUCKETS)]
    assert set(flood) == set(range(REJECTED_BUCKETS))
    assert max(flood.count(b) for b in set(flood)) == min(flood.count(b) for b in set(flood)) == 10


def test_environment_overrides_defaults_and_flags_override_environment():
    env = {
        "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": "k1:9092, k2:9092",
        "ORDERLOG_CASSANDRA_HOSTS": "c1,c2,c3",
        "ORDERLOG_CASSANDRA_PORT": "19042",
        "ORDERLOG_BUSINESS_TIMEZONE": "Europe/Paris",
    }
    settings = load_settings(environ=env, cassandra_port=29042)
    assert settings.kafka.bootstrap_list == ["k1:9092", "k2:9092"]
    assert settings.cassandra.host_list == ["c1", "c2", "c3"]
    assert settings.cassandra.port == 29042
    assert settings.business.timezone == "Europe/Paris"


WHOLE = "expected a whole number"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORDERLOG_CASSANDRA_PORT": "ninety"}, f"ORDERLOG_CASSANDRA_PORT='ninety': {WHOLE} from 1 to 65535"),
        ({"ORDERLOG_BUSINESS_TIMEZONE": "Mars/Olympus"},
         "ORDERLOG_BUSINESS_TIMEZONE='Mars/Olympus': expected an IANA time zone such as Asia/Tokyo"),
        ({"ORDERLOG_CASSANDRA_KEYSPACE": "drop table;"},
         "ORDERLOG_CASSANDRA_KEYSPACE='drop table;': expected a keyspace name: letters, digits and underscores "
         "only, at most 48"),
        ({"ORDERLOG_KAFKA_TOPIC_PARTITIONS": "0"}, f"ORDERLOG_KAFKA_TOPIC_PARTITIONS='0': {WHOLE} of at least 1"),
        ({"ORDERLOG_REJECTED_TTL_DAYS": "0"}, f"ORDERLOG_REJECTED_TTL_DAYS='0': {WHOLE} from 1 to 7300"),
        ({"ORDERLOG_REJECTED_TTL_DAYS": "-3"}, f"ORDERLOG_REJECTED_TTL_DAYS='-3': {WHOLE} from 1 to 7300"),
        ({"ORDERLOG_REJECTED_TTL_DAYS": "a month"}, f"ORDERLOG_REJECTED_TTL_DAYS='a month': {WHOLE} from 1 to 7300"),
        ({"ORDERLOG_REJECTED_TTL_DAYS": "7301"}, f"ORDERLOG_REJECTED_TTL_DAYS='7301': {WHOLE} from 1 to 7300"),
        ({"ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS": "0"}, f"ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS='0': {WHOLE} of at least 1"),
        ({"ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS": "two"},
         f"ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS='two': {WHOLE} of at least 1"),
        (
            {"ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS": "2"},
            "ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS='2': expected at most ORDERLOG_KAFKA_REPLICATION_FACTOR (1), "
            "or no record could ever be acknowledged",
        ),
        (
            {"ORDERLOG_CASSANDRA_CONSISTENCY": "QUORUMS"},
            "ORDERLOG_CASSANDRA_CONSISTENCY='QUORUMS': expected one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, "
            "EACH_QUORUM, LOCAL_ONE",
        ),
        ({"ORDERLOG_CASSANDRA_CONSISTENCY": "LOCAL_SERIAL"},
         "ORDERLOG_CASSANDRA_CONSISTENCY='LOCAL_SERIAL': expected one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, "
         "EACH_QUORUM, LOCAL_ONE"),
        ({"ORDERLOG_CASSANDRA_CONSISTENCY": "ANY"},
         "ORDERLOG_CASSANDRA_CONSISTENCY='ANY': expected one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, "
         "EACH_QUORUM, LOCAL_ONE"),
    ],
)
def test_bad_configuration_names_the_variable(env, message):
    with pytest.raises(ConfigError) as error:
        load_settings(environ=env)
    assert str(error.value) == message


def test_consistency_and_min_insync_replicas_come_from_the_environment():
    env = {
        "ORDERLOG_CASSANDRA_CONSISTENCY": " local_one ",
        "ORDERLOG_KAFKA_REPLICATION_FACTOR": "3",
        "ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS": "2",
    }
    settings = load_settings(environ=env)
    assert settings.cassandra.consistency == "LOCAL_ONE"
    assert (settings.kafka.replication_factor, settings.kafka.min_insync_replicas) == (3, 2)


def test_the_connector_gets_the_configured_consistency():
    from jobs.session import spark_conf

    for level in ("LOCAL_QUORUM", "ONE"):
        conf = spark_conf(load_settings(environ={"ORDERLOG_CASSANDRA_CONSISTENCY": level}))
        assert conf["spark.cassandra.output.consistency.level"] == level
        assert conf["spark.cassandra.input.consistency.level"] == level


CONFIG_VARIABLES = ("ORDERLOG_CASSANDRA_CONSISTENCY", "ORDERLOG_KAFKA_MIN_INSYNC_REPLICAS",
                    "ORDERLOG_KAFKA_REPLICATION_FACTOR")


@hypothesis.settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(CONFIG_VARIABLES), st.text(max_size=20)))
def test_any_value_of_the_variables_is_a_setting_or_a_clear_error(env):
    try:
        loaded = load_settings(environ=env)
    except ConfigError as exc:
        message = str(exc)  # one line naming the variable
        assert any(message.startswith(name) for name in CONFIG_VARIABLES) and "\n" not in message
    else:
        assert 1 <= loaded.kafka.min_insync_replicas <= loaded.kafka.replication_factor
        assert loaded.cassandra.consistency in ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM",
                                                 "EACH_QUORUM", "LOCAL_ONE")


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("japanese", JAPANESE), ("JAPANESE", JAPANESE), (" Western ", WESTERN), ("和食", JAPANESE),
     ("洋食", WESTERN), ("chinese", None), ("", None), ("和 食", None)],
)
def test_menu_aliases(spelling, canonical):
    assert canonical_menu_type(spelling) == canonical


@pytest.mark.parametrize(
    ("japanese", "western", "segment"), [(3, 1, JAPANESE), (1, 3, WESTERN), (2, 2, EVEN), (0, 0, EVEN)]
)
def test_preference(japanese, western, segment):
    assert preference(japanese, western) == segment


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2025-05-31T23:30:00+09:00", date(2025, 5, 31)),
        ("2025-05-31T23:59:59+09:00", date(2025, 5, 31)),
        ("2025-06-01T00:00:00+09:00", date(2025, 6, 1)),
        ("2025-05-31T15:30:00+00:00", date(2025, 6, 1)),
        ("2025-05-31T14:59:59+00:00", date(2025, 5, 31)),
        ("2025-05-31T10:00:00-05:00", date(2025, 6, 1)),
    ],
)
def test_business_date_in_tokyo(timestamp, expected):
    assert business_date(datetime.fromisoformat(timestamp), TOKYO) == expected


def test_business_date_needs_an_aware_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        business_date(datetime(2025, 5, 31, 12, 0), TOKYO)


@pytest.mark.parametrize(
    ("timestamp", "zone", "expected"),
    [
        ("2025-05-31T12:34:56+09:00", TOKYO, 12),
        ("2025-05-31T23:59:59+09:00", TOKYO, 23),
        ("2025-05-31T15:00:00+00:00", TOKYO, 0),  # already 2025-06-01 00:00 in Tokyo
        ("2025-05-31T02:59:59+00:00", TOKYO, 11),
        # New York, spring forward on 2025-03-09: 01:59:59 EST is followed by 03:00 EDT.
        ("2025-03-09T06:59:59+00:00", "America/New_York", 1),
        ("2025-03-09T07:00:00+00:00", "America/New_York", 3),
        # Fall back on 2025-11-02: 01:00-01:59 happens twice (EDT, then EST).
        ("2025-11-02T05:30:00+00:00", "America/New_York", 1),
        ("2025-11-02T06:30:00+00:00", "America/New_York", 1),
        ("2025-11-02T07:30:00+00:00", "America/New_York", 2),
    ],
)
def test_business_hour_is_the_hour_on_the_business_clock(timestamp, zone, expected):
    assert business_hour(datetime.fromisoformat(timestamp), zone) == expected


def test_business_hour_needs_an_aware_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        business_hour(datetime(2025, 5, 31, 12, 0), TOKYO)


def test_yesterday_is_the_previous_business_day():
    # 2025-05-31 20:00 UTC is already 06-01 in Tokyo: yesterday there is 05-31.
    assert yesterday(TOKYO, now=datetime(2025, 5, 31, 20, 0, tzinfo=UTC)) == date(2025, 5, 31)
    assert yesterday(TOKYO, now=datetime(2025, 5, 31, 10, 0, tzinfo=UTC)) == date(2025, 5, 30)


def test_date_range_includes_both_ends():
    assert date_range(date(2025, 5, 30), date(2025, 6, 1)) == [date(2025, 5, 30), date(2025, 5, 31), date(2025, 6, 1)]
    assert date_range(date(2025, 6, 1), date(2025, 5, 30)) == []


def test_buckets_are_stable_and_spread():
    assert bucket_of("u-1", SEGMENT_BUCKETS) == bucket_of("u-1", SEGMENT_BUCKETS)
    spread = {bucket_of(f"order-{n}", RAW_ORDER_BUCKETS) for n in range(2000)}
    assert spread == set(range(RAW_ORDER_BUCKETS))


@pytest.mark.integration
def test_spark_columns_agree_with_the_python_rules(spark):
    from pyspark.sql import functions as F

    from orderlog.business_day import business_date_col
    from orderlog.layout import bucket_col, rejected_bucket_col

    keys = ["u-1", "ユーザー", "", "kafka:order-logs:2:123456", "😀"] + [f"id-{n}" for n in range(200)]
    instants = [datetime(2025, 5, 31, 14, 0, tzinfo=UTC) + timedelta(minutes=17 * n) for n in range(len(keys))]
    df = spark.createDataFrame(list(zip(keys, instants, strict=True)), "key STRING, at TIMESTAMP")
    at_of = dict(zip(keys, instants, strict=True))
    rows = df.select(
        "key",
        bucket_col(F.col("key"), RAW_ORDER_BUCKETS).alias("bucket"),
        business_date_col(F.col("at"), TOKYO).alias("day"),
        rejected_bucket_col(F.crc32(F.col("key").cast("binary"))).alias("rejected_bucket"),
        F.crc32(F.col("key").cast("binary")).alias("offset"),
    ).collect()
    assert len(rows) == len(keys)
    for row in rows:
        assert row.bucket == bucket_of(row.key, RAW_ORDER_BUCKETS), row.key
        assert row.rejected_bucket == rejected_bucket_of(row.offset), row.offset
        # Compare with the instant we sent: collect() renders timestamps in the local zone.
        assert row.day == business_date(at_of[row.key], TOKYO), row.key


# Zones with and without daylight saving time, one with a 30-minute change (Lord Howe) and
# one whose offset is not a whole hour (Kathmandu, +05:45).
CLOCK_ZONES = [TOKYO, "UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu",
               "America/Sao_Paulo"]
# Within the events' accepted range (from 2000), and before 2037 where both time zone
# databases still hold explicit transitions rather than extrapolated rules.
INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2036, 12, 31), timezones=st.just(UTC))


def _near_a_change(zone: str, year: int) -> list[datetime]:
    """Instants every 20 minutes around each offset change of the zone in a year."""
    from zoneinfo import ZoneInfo

    tz, found = ZoneInfo(zone), []
    at = datetime(year, 1, 1, tzinfo=UTC)
    while at.year == year:
        nxt = at + timedelta(hours=6)
        if at.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            found += [at + timedelta(minutes=20 * n) for n in range(19)]
        at = nxt
    return found


@pytest.mark.integration
@hypothesis.settings(
    max_examples=12, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)
@given(zone=st.sampled_from(CLOCK_ZONES), year=st.integers(2000, 2036), instants=st.lists(INSTANTS, max_size=40))
def test_spark_business_date_and_hour_agree_with_python(spark, zone, year, instants):
    """Random instants and every instant around the zone's clock changes of a year: the
    Spark twins give the same business date and hour as the Python rules."""
    from pyspark.sql import functions as F

    from orderlog.business_day import business_date_col, business_hour_col

    instants = instants + _near_a_change(zone, year)
    df = spark.createDataFrame([(n, at) for n, at in enumerate(instants)], "n INT, at TIMESTAMP")
    rows = df.select(
        "n", business_date_col(F.col("at"), zone).alias("day"), business_hour_col(F.col("at"), zone).alias("hour")
    ).collect()
    assert len(rows) == len(instants)
    for row in rows:
        at = instants[row.n]
        assert (row.day, row.hour) == (business_date(at, zone), business_hour(at, zone)), (zone, at.isoformat())


def test_kept_bytes_of_a_rejected_record():
    import hashlib

    from orderlog.rejected import KEPT_PAYLOAD_BYTES, KeptBytes, kept_bytes

    value = b"\x00\xff" * 40_000
    kept = kept_bytes(b"k" * 70_000, value)
    assert (len(kept.key), kept.key_length) == (KEPT_PAYLOAD_BYTES, 70_000)
    assert (kept.value, kept.value_length) == (value[:KEPT_PAYLOAD_BYTES], 80_000)
    assert kept.value_sha256 == hashlib.sha256(value).hexdigest()
    assert kept_bytes(None, None) == KeptBytes(None, None, None, None, None)  # no key, no value
    assert kept_bytes(b"", b"").value_sha256 == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("data", "length", "shown"),
    [
        (None, None, "(none)"),
        (b"", 0, "(empty)"),
        (b'<script>alert("x")</script>', 27, '<script>alert("x")</script>'),  # text; HTML escapes it later
        (b"bell\x07\n\xff\xfe", 8, "bell\\x07\\x0a\\xff\\xfe"),
        ("\ud800".encode("utf-8", "surrogatepass"), 3, "\\xed\\xa0\\x80"),
        (b"x" * 300, 300, "x" * 200 + "…"),
        (b"abc", 70_000, "abc  (first 3 of 70000 bytes stored)"),
    ],
)
def test_a_payload_preview_is_one_printable_line(data, length, shown):
    from orderlog.rejected import payload_preview

    assert payload_preview(data, length) == shown


@given(st.binary(max_size=600), st.integers(min_value=1, max_value=300))
def test_any_bytes_preview_as_printable_text(data, chars):
    from orderlog.rejected import payload_preview

    text = payload_preview(data, len(data), chars)
    assert text.isprintable() and text.encode("utf-8")
