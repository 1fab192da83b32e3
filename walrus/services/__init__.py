"""Business logic of the Walrus role: the image store."""
