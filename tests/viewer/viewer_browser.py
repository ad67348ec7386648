"""Helpers for the viewer's browser tests: a free port, the viewer as a subprocess, headless Chromium.

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright's Python package (no browser is
downloaded). The viewer runs as ``sine-fields view`` in its own process so that the test also
covers the command line, the printed URL and the clean stop on Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Running as root in a container needs --no-sandbox; swiftshader gives WebGL without a GPU (the
# canvas is blank without it); the rest keeps Chromium from reaching the network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
]
URL_LINE = re.compile(r"viewer: (http://127\.0\.0\.1:\d+)")


def chromium_missing_reason() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian package `chromium`)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the `playwright` Python package is not installed (pip install -e .[dev])"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ViewerProcess:
    """``sine-fields view`` in a subprocess; its output is collected on a thread as it arrives."""

    def __init__(self, args: list[str]) -> None:
        command = [sys.executable, "-m", "sine_fields.cli", "view", *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = URL_LINE.search(self.output)
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"viewer exited with {self.process.returncode} before serving:\n{self.output}")
            time.sleep(0.2)
        raise AssertionError(f"viewer printed no URL within {timeout} s:\n{self.output}")

    def interrupt(self, timeout: float) -> int:
        """Ctrl-C: send SIGINT and return the exit code; kill it if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"viewer did not stop within {timeout} s of SIGINT:\n{self.output}") from None
        finally:
            self._reader.join(timeout=5)


@contextmanager
def viewer(args: list[str]) -> Iterator[ViewerProcess]:
    """Start the viewer; always stop it, also when the test fails."""
    proc = ViewerProcess(args)
    try:
        yield proc
    finally:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()


@contextmanager
def chromium_page(width: int = 1280, height: int = 800):
    """A page in headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()
