"""Facts shared by every part of the pipeline: configuration, the order-event schema,
the menu types, the business day and the Cassandra layout. Each lives in one module."""
