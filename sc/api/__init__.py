"""REST API of the Storage controller role under /sc/api/1.0/."""
