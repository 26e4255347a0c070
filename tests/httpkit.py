"""A real HTTP server for tests: Python's ``http.server`` serving a folder, in a process of its
own (``python tests/httpkit.py ROOT CONTROL``), which tests steer through the JSON file
CONTROL, read at every request:

- ``fail``: {path: status}: GET requests for these paths (below ROOT, no leading '/')
  answer with that status (403, 500, ...), as a server that fails on reading does (HEAD
  answers as usual);
- ``stamps``: false drops the headers that say a file changed (``Last-Modified``, ``ETag``),
  as servers that send neither do;
- ``folders``: a status (403, 404) that GET and HEAD requests for a folder's URL (with or
  without its trailing '/') answer, as a server that lists no folders does (nginx without
  ``autoindex``); every file's URL answers as usual;
- ``token``: {name: value}: every request (GET or HEAD) whose query lacks these parameters
  answers 403, as a server of signed URLs (an Azure SAS token, a presigned URL) does;
- ``basic``: [user, password]: every request (GET or HEAD) without that HTTP Basic
  ``Authorization`` header answers 401, as a server behind a password does;
- ``log``: the path of a file to which each request's method and path (query and all) is
  appended, one a line, as it arrives: what a client asked for, or that it asked nothing.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve()


class HttpServer:
    """A running server (:func:`serving`): its ``url`` and the control file it reads."""

    def __init__(self, url: str, control: Path) -> None:
        self.url = url
        self.control = control

    def set(self, **control: Any) -> None:
        """Replace the server's control (``fail``, ``stamps``, ``folders``, ``token``,
        ``basic``, ``log``), from its next request on."""
        self.control.write_text(json.dumps(control))


@contextlib.contextmanager
def serving(root: Path, **control: Any) -> Iterator[HttpServer]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) from a process of its own, steered
    by ``control`` (see the module's doc); the server is stopped at the end."""
    control_file = root.parent / f".{root.name}-http-control.json"
    server = HttpServer("", control_file)
    server.set(**control)
    proc = subprocess.Popen(
        [sys.executable, str(_HERE), str(root), str(control_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        server.url = f"http://127.0.0.1:{port}"
        yield server
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


class _Handler(http.server.SimpleHTTPRequestHandler):
    control_file = ""

    def _control(self) -> dict[str, Any]:
        return dict(json.loads(Path(self.control_file).read_text()))

    def _failed(self) -> bool:
        path = self.path.split("?", 1)[0].lstrip("/")
        status = self._control().get("fail", {}).get(path)
        if status is None:
            return False
        self.send_error(int(status))
        return True

    def _unsigned(self) -> bool:
        """Answer 403 to a request whose query lacks the ``token`` parameters, where set."""
        from urllib.parse import parse_qs, urlsplit

        token = self._control().get("token")
        if not token:
            return False
        query = parse_qs(urlsplit(self.path).query)
        if all(query.get(name) == [value] for name, value in token.items()):
            return False
        self.send_error(403)
        return True

    def _unauthorized(self) -> bool:
        """Answer 401 to a request without the ``basic`` credentials, where set."""
        import base64

        basic = self._control().get("basic")
        if not basic:
            return False
        expected = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
        if self.headers.get("Authorization") == expected:
            return False
        self.send_error(401)
        return True

    def _folder_refused(self) -> bool:
        """Answer ``folders``' status to a request for a folder's URL, where it is set."""
        status = self._control().get("folders")
        if status is None or not os.path.isdir(self.translate_path(self.path)):
            return False
        self.send_error(int(status))
        return True

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() in ("last-modified", "etag") and not self._control().get("stamps", True):
            return
        super().send_header(keyword, value)

    def _logged(self) -> None:
        log = self._control().get("log")
        if log:
            with open(log, "a") as f:
                f.write(f"{self.command} {self.path}\n")

    def do_GET(self) -> None:
        self._logged()
        if self._unauthorized() or self._unsigned() or self._folder_refused() or self._failed():
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        self._logged()
        if not self._unauthorized() and not self._unsigned() and not self._folder_refused():
            super().do_HEAD()

    def log_message(self, *args: Any) -> None:
        pass


def _main(root: str, control: str) -> None:
    handler = functools.partial(type("H", (_Handler,), {"control_file": control}), directory=root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    os.chdir(root)
    server.serve_forever()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
