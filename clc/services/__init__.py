"""The cloud controller's business logic."""
