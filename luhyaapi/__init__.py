"""Shared library of eduCloud: ids, messages, the bus, signed REST calls and configuration (no role-specific code)."""
