"""Running the service: uvicorn in the foreground (the CLI) or in a thread on a free loopback
port (tests, the benchmark)."""

import socket
import threading
import time

import uvicorn

from reverie.errors import ReverieError
from reverie.serve.app import create_app
from reverie.serve.service import Service


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # why IPPROTO_TCP named: asyncio turns Nagle off only on sockets that say they are TCP; with
    # proto 0 every response waited ~40 ms for a delayed ACK (measured: 44 ms per 400 answer)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)     # why: connections queue from here on, before uvicorn is up
    except OSError as e:
        sock.close()
        raise ReverieError(f"cannot bind {host}:{port} ({e.strerror}); pick another --port or "
                           f"stop what holds it") from None
    return sock


class Running:
    """A service behind uvicorn on its own thread. `url` is its base URL."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0):
        self.service = service
        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                                timeout_keep_alive=30, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="reverie-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise ReverieError("the HTTP server did not start")
            time.sleep(0.02)

    def close(self):
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
        self.service.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Server(uvicorn.Server):
    """uvicorn, minus re-raising SIGINT/SIGTERM after its graceful shutdown: the service must
    close (stop a night's child process, flush the memories) and exit 0 first."""

    def capture_signals(self):
        import contextlib
        import signal
        if threading.current_thread() is not threading.main_thread():
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def handled():
            before = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT,
                                                                       signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in before.items():
                    signal.signal(s, handler)
        return handled()


def serve_forever(service: Service, sock: socket.socket, on_ready=None) -> None:
    """Serve on the bound socket until SIGINT or SIGTERM, then shut down gracefully: in-flight
    requests finish, a running night is stopped, the memories are flushed."""
    if on_ready:
        on_ready(sock.getsockname()[1])
    config = uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                            timeout_keep_alive=30, lifespan="off")
    try:
        _Server(config).run(sockets=[sock])
    finally:
        service.close()
        sock.close()
