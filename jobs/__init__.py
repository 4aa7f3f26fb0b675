"""The Spark jobs: `streaming` (Kafka -> Cassandra) and `aggregate` (the nightly batch)."""
