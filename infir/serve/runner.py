"""Running the server: in the foreground (`infir serve`) or in a background thread (tests, teachers)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from infir.serve.config import ServerConfig
from infir.utils.log import get_logger

log = get_logger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 = a free port chosen by the OS; read it back from the socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
               config: ServerConfig | None = None) -> None:
    """Load the model, listen, and serve until interrupted. Prints the URL on stdout once ready."""
    import uvicorn

    from infir.serve.server import create_app

    app = create_app(model_dir, config)
    sock = bind_socket(host, port)
    url = _url(sock, host)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets=sockets)
        print(f"infir serve: listening on {url}/v1 (model '{app.state.serving.model_name}')", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])


class BackgroundServer:
    """Serve an app (or model folder, or Generator) on loopback from a thread: `with BackgroundServer(...) as s:`.

    `s.url` is the base URL including `/v1` (what the `openai` client and `load_generator` take).
    """

    def __init__(self, app_or_model: Any, host: str = "127.0.0.1", port: int = 0,
                 config: ServerConfig | None = None) -> None:
        import uvicorn
        from fastapi import FastAPI

        from infir.serve.server import create_app

        self.app = app_or_model if isinstance(app_or_model, FastAPI) else create_app(app_or_model, config)
        self.sock = bind_socket(host, port)
        self.root = _url(self.sock, host)
        self.url = self.root + "/v1"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="infir-server", daemon=True)

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.root} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main() -> None:  # `python -m infir.serve.runner MODEL_DIR [PORT]` for quick manual runs
    run_server(sys.argv[1], port=int(sys.argv[2]) if len(sys.argv) > 2 else 8000)


if __name__ == "__main__":
    main()
