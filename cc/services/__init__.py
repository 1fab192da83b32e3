"""Business logic of the Cluster controller role."""
