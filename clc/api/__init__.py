"""REST API of the cloud controller under /clc/api/1.0/."""
