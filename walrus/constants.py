"""Sizes and limits of the image store."""

MiB = 1024 * 1024

# Reads and writes of image data go in pieces this large: big enough that the per-call cost (a syscall, a hash
# update, a hand-over to the hashing thread) is small against the copy, small enough that a piece is still in the
# CPU's cache when it is written and hashed (as luhyaapi.transfer.CHUNK_BYTES), and that many transfers at once stay
# within a school server's memory (a transfer holds at most luhyaapi.transfer.HASH_QUEUE_CHUNKS pieces).
IO_CHUNK_BYTES = 512 * 1024

# During one long PUT the received offset is saved this often, so a crash of the server loses at most this much.
CHECKPOINT_BYTES = 64 * MiB

# The most one PUT may carry. The web server (waitress) holds a request's whole body in a temporary file before
# walrus sees it, so bigger images go in pieces (luhyaapi.transfer.PIECE_BYTES each, ``docs/images.md``); a request
# over this is refused by its headers, before any of its body is sent.
MAX_PUT_BYTES = 1024 * MiB
PUT_TOO_LARGE = (f"a request body may have at most {MAX_PUT_BYTES} bytes (1 GiB); send a bigger image in pieces, "
                 "each a PUT at the offset where the last one ended (docs/images.md)")

# Disk images of schools' desktops and servers are tens of GB; refuse sizes beyond reason before any disk is used.
MAX_IMAGE_BYTES = 4 * 1024 * 1024 * MiB

# The ``reason`` of a 507 (the store's disk has no room): programs (the CLC passing it on, upload clients) test it.
DISK_FULL = "disk-full"
