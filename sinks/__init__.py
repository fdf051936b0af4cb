"""Where Forewarn's records go besides Kafka topics: the dead-letter topic, and later ClickHouse."""
