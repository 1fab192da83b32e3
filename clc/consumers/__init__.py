"""Queue consumers of the cloud controller, one module per queue."""
