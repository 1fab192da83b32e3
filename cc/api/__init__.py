"""REST API of the Cluster controller role under /cc/api/1.0/."""
