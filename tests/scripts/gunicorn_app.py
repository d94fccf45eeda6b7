"""A WSGI app served by gunicorn in collector/tests/gunicorn_e2e.rs: each request to /grow
keeps one more MiB, allocated at a known line, in a module-level list, and every answer is
the worker's pid and how many MiB it holds."""
import os

GROW_BYTES = 1 << 20
held = []


def app(environ, start_response):
    if environ["PATH_INFO"] == "/grow":
        held.append(bytearray(GROW_BYTES))  # GUNICORN_GROW_LINE
    body = f"{os.getpid()} {len(held)}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
