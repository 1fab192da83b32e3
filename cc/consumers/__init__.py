"""Queue consumers of the Cluster controller role, one module per queue."""
