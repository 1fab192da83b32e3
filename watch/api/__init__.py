"""REST API of the Cloudwatch role under /watch/api/1.0/."""
