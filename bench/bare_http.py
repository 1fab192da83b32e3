"""A bare HTTP file server on the eduCloud host's web server settings (waitress with ``daemons.host.web_server``'s
threads, buffers and socket reads), for ``bench/volume_io.py``'s ceiling: what any Python WSGI application on this
web server can move on loopback. ``PUT /<name>`` writes the body to ``<folder>/<name>`` in 1 MiB reads;
``GET /<name>`` sends it back in 1 MiB reads, as wsgidav does with its 1 MiB blocks (``sc.dav.app``). No login, no
locks, no properties: the difference to WebDAV's figures is wsgidav's and the SC's share.

    python bench/bare_http.py PORT FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

from waitress.server import create_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemons.host import RECV_BYTES  # noqa: E402  (after the path: the script runs from anywhere)

PIECE = 2**20


def application(folder: Path):
    def serve(environ, start_response):
        name = environ["PATH_INFO"].strip("/")
        if not name.isalnum():
            start_response("400 Bad Request", [("Content-Length", "0")])
            return [b""]
        path = folder / name
        if environ["REQUEST_METHOD"] == "PUT":
            body, left = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0)
            with path.open("wb") as data:
                while left and (piece := body.read(min(PIECE, left))):
                    data.write(piece)
                    left -= len(piece)
            start_response("201 Created", [("Content-Length", "0")])
            return [b""]

        def pieces():
            with path.open("rb") as data:
                while piece := data.read(PIECE):
                    yield piece

        start_response("200 OK", [("Content-Length", str(path.stat().st_size))])
        return pieces()

    return serve


def main() -> None:
    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    server = create_server(application(folder), host="127.0.0.1", port=port, threads=16, ident="bare",
                           channel_timeout=120, outbuf_overflow=32 * 2**20, recv_bytes=RECV_BYTES,
                           max_request_body_size=2**31)
    server.run()


if __name__ == "__main__":
    main()
