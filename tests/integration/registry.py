"""A real Confluent-compatible schema registry for the integration tests.

The registry is rivven-schema (an in-memory implementation of the Confluent
Schema Registry REST API), started as a child process for the test session.
The binary is taken from FOREWARN_RIVVEN_SCHEMA_BIN, else PATH, else the cache
directory below; when none has it and ``cargo`` is available it is built into
the cache once, at the pinned version. Set FOREWARN_TEST_SCHEMA_REGISTRY to use
an existing registry instead (see deploy/registry/README.md).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO, Callable

from streams.embedded import die_with_parent_hook

RIVVEN_SCHEMA_VERSION = "0.0.22"
CACHE_ROOT = Path.home() / ".cache" / "forewarn" / "rivven"
CACHED_BINARY = CACHE_ROOT / "bin" / "rivven-schema"

_PORT_ATTEMPTS = 3
# The readiness probe talks to our own child on loopback: never through a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RegistryUnavailable(RuntimeError):
    """No registry could be provided; the message says what to install or set."""


class RegistryNotInstallable(RegistryUnavailable):
    """rivven-schema is nowhere to be found and there is no cargo to build it."""


def registry_answers(url: str, *, direct: bool = False) -> bool:
    """Whether ``GET <url>/subjects`` answers 200 right now."""
    opener = _DIRECT if direct else urllib.request.build_opener()
    try:
        with opener.open(f"{url}/subjects", timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):  # URLError and HTTPError are OSErrors
        return False


def _reports_pinned_version(binary: Path) -> bool:
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.stdout.split() == ["rivven-schema", RIVVEN_SCHEMA_VERSION]


def find_rivven_schema() -> Path | None:
    """The binary to run, or None when it would have to be built."""
    configured = os.environ.get("FOREWARN_RIVVEN_SCHEMA_BIN", "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RegistryUnavailable(f"FOREWARN_RIVVEN_SCHEMA_BIN={configured} is not an executable file")
        return path
    on_path = shutil.which("rivven-schema")
    if on_path:
        return Path(on_path)
    # The cache holds what install_rivven_schema built; a pin moved since is rebuilt.
    if CACHED_BINARY.is_file() and _reports_pinned_version(CACHED_BINARY):
        return CACHED_BINARY
    return None


def install_rivven_schema(announce: Callable[[str], None]) -> Path:
    """Build the pinned rivven-schema into the cache with cargo and return the binary."""
    cargo = shutil.which("cargo")
    if cargo is None:
        raise RegistryNotInstallable(
            "no schema registry for the integration tests: rivven-schema is not on PATH, not in "
            f"{CACHED_BINARY}, and cargo is not installed to build it; install rivven-schema "
            f"{RIVVEN_SCHEMA_VERSION}, or set FOREWARN_RIVVEN_SCHEMA_BIN or FOREWARN_TEST_SCHEMA_REGISTRY"
        )
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    log_path = CACHE_ROOT / "install.log"
    target_dir = CACHE_ROOT / "target"
    announce(f"building rivven-schema {RIVVEN_SCHEMA_VERSION} for the schema registry tests "
             f"(once, a few minutes; log: {log_path})")
    command = [cargo, "install", "rivven-schema", "--version", RIVVEN_SCHEMA_VERSION, "--locked",
               "--root", str(CACHE_ROOT)]
    with open(log_path, "wb") as log:
        result = subprocess.run(command, env=dict(os.environ, CARGO_TARGET_DIR=str(target_dir)),
                                stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0 or not CACHED_BINARY.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RegistryUnavailable(f"building rivven-schema failed (exit {result.returncode}); "
                                  f"end of {log_path}:\n{tail}")
    # The build directory outlives a failed or interrupted build, so the next run
    # resumes it; after an install it is only hundreds of MB of intermediate files.
    shutil.rmtree(target_dir, ignore_errors=True)
    return CACHED_BINARY


def _free_loopback_port() -> int:
    # Another process may take the port before the registry binds it; start() then retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RivvenSchemaRegistry:
    """One in-memory rivven-schema on a free loopback port, logging to ``log_path``."""

    def __init__(self, binary: Path, log_path: Path, *, start_timeout: float = 30.0,
                 stop_timeout: float = 10.0) -> None:
        self.binary = binary
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.url = ""
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> str:
        """Start the registry and return its URL once ``GET /subjects`` answers."""
        self._log = open(self.log_path, "ab")
        for _ in range(_PORT_ATTEMPTS):
            port = _free_loopback_port()
            self.url = f"http://127.0.0.1:{port}"
            self._proc = subprocess.Popen(
                [str(self.binary), "serve", "--host", "127.0.0.1", "--port", str(port)],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, NO_COLOR="1"),
                # Its own session, so a Ctrl-C reaches pytest first and teardown stops it.
                start_new_session=True, preexec_fn=die_with_parent_hook(),
            )
            deadline = time.monotonic() + self.start_timeout
            while self._proc.poll() is None and time.monotonic() < deadline:
                if registry_answers(self.url, direct=True):
                    self._allow_any_evolution()
                    return self.url
                time.sleep(0.05)
            if self._proc.poll() is None:  # running but silent until the deadline
                break
            # Exited before answering: most likely the port was taken meanwhile.
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RegistryUnavailable(f"rivven-schema ({self.binary}) did not answer GET /subjects within "
                                  f"{self.start_timeout:.0f}s; end of {self.log_path}:\n{tail}")

    def _allow_any_evolution(self) -> None:
        # rivven-schema 0.0.22 judges any change to a record with a timestamp-millis
        # field BACKWARD-incompatible (its check has no case for logical types), and
        # every Forewarn record has one; so compatibility checking is turned off.
        # `serve --compatibility` is accepted but not applied, hence the REST call.
        request = urllib.request.Request(
            f"{self.url}/config", method="PUT", data=json.dumps({"compatibility": "NONE"}).encode(),
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        try:
            with _DIRECT.open(request, timeout=5) as response:
                answer = json.load(response)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise RegistryUnavailable(f"rivven-schema refused PUT /config: {exc}") from exc
        if answer.get("compatibilityLevel", answer.get("compatibility")) != "NONE":
            raise RegistryUnavailable(f"rivven-schema did not accept compatibility NONE: {answer}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited by the deadline."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
