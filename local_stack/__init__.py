"""The local stack: real single-node Kafka and Cassandra on 127.0.0.1, without Docker."""
