"""Queue consumers of the Node controller role, one module per queue."""
