"""REST API of the Node controller role under /nc/api/1.0/."""
