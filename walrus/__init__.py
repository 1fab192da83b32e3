"""Walrus: the image store."""
