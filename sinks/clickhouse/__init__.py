"""ClickHouse, where everything lands for analysts: the store every writer and reader opens."""
