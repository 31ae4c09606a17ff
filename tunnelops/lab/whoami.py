"""The lab internet's what-is-my-address service: answers any HTTP GET with the source
address it sees, one line. Runs inside the lab's `inet` namespace.

    python -m tunnelops.lab.whoami PORT
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.client_address[0]} {format % args}\n")


def main(port: int) -> None:
    server = ThreadingHTTPServer(("0.0.0.0", port), _Handler)
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
