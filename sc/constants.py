"""Sizes and limits of the storage controller's volumes."""

MiB = 1024 * 1024
GiB = 1024 * MiB

# Volumes are whole MiB: guests partition in MiB, and tgt presents a LUN in 512-byte blocks.
SIZE_UNIT = MiB
# A school's largest data disk is a few TB; refuse sizes beyond reason before any arithmetic with them.
MAX_VOLUME_BYTES = 64 * 1024 * GiB
