"""REST API of the Walrus role under /walrus/api/1.0/."""
