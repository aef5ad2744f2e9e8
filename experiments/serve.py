"""The local HTTP server behind the ``http`` workload: ``GET /N`` answers N bytes.

The runner starts it in its own process (``python -m experiments.serve``) for a run of ``http``,
so the server's work never shares a GIL with the executor being measured. It listens on
127.0.0.1 only, prints its port, and ends when its stdin closes -- that is, when the runner ends,
however it ends.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

# Where the workers find the server: set by the runner before any executor starts, so every
# worker process (forked, spawned, loky's, a LocalCluster's) inherits it.
ADDRESS_VAR = "CONLAB_HTTP_ADDRESS"
_ZEROS = bytes(1 << 20)  # one buffer, sent as many times as a response needs


def serve() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                size = int(self.path.lstrip("/"))
                if size < 0:
                    raise ValueError
            except ValueError:
                self.send_error(400, "GET /N, N a whole number of bytes")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            view = memoryview(_ZEROS)
            while size:
                chunk = min(size, len(view))
                self.wfile.write(view[:chunk])
                size -= chunk

        def log_message(self, *args) -> None:  # one line per request would flood stderr
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # many workers may connect at once

    server = Server(("127.0.0.1", 0), Handler)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the runner closes it, or dies
    os._exit(0)


@contextmanager
def running():
    """Run the server for the duration of the block, its address in ``$CONLAB_HTTP_ADDRESS``."""
    import subprocess

    from experiments.bootstrap import command

    # Not `-m`: the working directory (the user's) must not come before the lab's package.
    lab_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen(
        command(sys.executable, lab_dir, "experiments.serve", "serve"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        port = int(process.stdout.readline() or b"0")
        if not port:
            raise RuntimeError("the http workload's local server did not start")
        os.environ[ADDRESS_VAR] = f"127.0.0.1:{port}"
        yield
    finally:
        os.environ.pop(ADDRESS_VAR, None)
        process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    serve()
