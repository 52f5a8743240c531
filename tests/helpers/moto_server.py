"""Run moto's S3 emulation as a real HTTP server on 127.0.0.1 (``python -m tests.helpers.moto_server PORT``).

Single-threaded on purpose: moto checks ``If-None-Match``/``If-Match`` and then writes in two
steps, so on a threaded server two racing conditional PUTs could both pass. Real S3 (and
MinIO) evaluate the condition atomically; serving one request at a time gives the emulation
the same atomicity, which the concurrency tests rely on.
"""

from __future__ import annotations

import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=False)
    print(f"moto s3 listening on 127.0.0.1:{server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
