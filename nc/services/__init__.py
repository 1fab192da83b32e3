"""Business logic of the Node controller role."""
