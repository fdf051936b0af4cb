"""The jars of the Apache Kafka broker: fetched once from Maven Central into a cache outside the repository.

Forewarn's embedded broker and ``deploy/kafka/kafka.sh`` run one Apache Kafka
node on a Java runtime; all it needs from Kafka is its jars. They are listed
here, path, size and SHA-256, and fetched with nothing but the standard library
(no Maven) into::

    <cache>/<version>/libs/             every jar, once all are verified (the java classpath is "<dir>/*")
    <cache>/<version>/libs.partial/     the fetch in progress: kept across runs, so a later one resumes
    <cache>/<version>/.resolve.lock     held while fetching (kafka.sh takes the same lock)

    libs = broker_libs()                # fetches on first use; progress on stderr

FOREWARN_KAFKA_DIST names an Apache Kafka distribution already on disk to use
instead, and nothing is fetched. ``python -m streams.kafka_dist fetch`` fetches
and prints the directory (kafka.sh runs it).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Iterable, Mapping, NamedTuple, Sequence, TextIO

from streams.words import counted

__all__ = ["KAFKA_VERSION", "KafkaDistError", "broker_libs", "cache_dir", "main"]

KAFKA_VERSION = "4.4.0"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"


class KafkaDistError(RuntimeError):
    """The broker's jars could not be had; one line saying what failed and what to do."""


class Jar(NamedTuple):
    """One file of the broker's classpath, as Maven Central holds it."""

    path: str  # relative to the repository root
    size: int  # bytes
    sha256: str

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


# The broker's runtime classpath: org.apache.kafka:kafka_2.13 and log4j-slf4j-impl with their
# runtime dependencies, as `mvn dependency:copy-dependencies -DincludeScope=runtime` resolved
# them from deploy/kafka/pom.xml (what kafka.sh did before this list existed). Each entry is the
# jar's path in Maven's local repository, its size and its SHA-256. To move to another version:
# `FOREWARN_KAFKA_VERSION=X deploy/kafka/kafka.sh resolve` still resolves an unpinned version
# with Maven; list the same three things for each jar of <cache>/X/libs (finding its path under
# <cache>/m2), and change KAFKA_VERSION.
PINNED_JARS: tuple[Jar, ...] = (
    Jar("at/yawk/lz4/lz4-java/1.11.2/lz4-java-1.11.2.jar", 897831, "8a7458657938e9b692224db83aac458c13abd7a59ab75c3d3b08bd2233a646a2"),
    Jar("com/dynatrace/hash4j/hash4j/0.22.0/hash4j-0.22.0.jar", 316573, "23028a3fd006e530bf495f551083208187cafd8f80624d048eba56442f16a50e"),
    Jar("com/fasterxml/jackson/core/jackson-annotations/2.21/jackson-annotations-2.21.jar", 82104, "53ca085f4a150f703f49e1aabd935bd03b43e1ea3d55d135438292af22cef56b"),
    Jar("com/fasterxml/jackson/core/jackson-core/2.21.7/jackson-core-2.21.7.jar", 594782, "8c5623b98f32d5f7e1287ff61ed50e08ab7b11381e991fff89327faabba42261"),
    Jar("com/fasterxml/jackson/core/jackson-databind/2.21.7/jackson-databind-2.21.7.jar", 1709095, "1290c2795e93e8a6861a6c4d9ff0d844d32f5ea178362cb2721edf5561e828b1"),
    Jar("com/fasterxml/jackson/dataformat/jackson-dataformat-yaml/2.21.7/jackson-dataformat-yaml-2.21.7.jar", 63001, "df2b3e6a194181dc067b7211d750926b4ae9e4f3c892a0005b8219a9b59be681"),
    Jar("com/fasterxml/jackson/datatype/jackson-datatype-jdk8/2.21.7/jackson-datatype-jdk8-2.21.7.jar", 36039, "b8f62f98363ed9aa259b3a479a64fcbe7e081158a8bec6733972e900d12f4e47"),
    Jar("com/github/ben-manes/caffeine/caffeine/3.2.0/caffeine-3.2.0.jar", 906581, "ec411dfdf0c03f25218648ce89861630b71680e5858a9a7278ebac8e55cab3d7"),
    Jar("com/github/luben/zstd-jni/1.5.7-17/zstd-jni-1.5.7-17.jar", 6323239, "c9043e2da8a16c13b6cd7661a5cb56685a573c3546ef4bd0ead67b0b67c2e107"),
    Jar("com/google/re2j/re2j/1.8/re2j-1.8.jar", 114335, "7b52c72156dd7f98b3237a5b35c1d34fba381b21048c89208913ad80a45dfbd7"),
    Jar("com/typesafe/scala-logging/scala-logging_2.13/3.9.6/scala-logging_2.13-3.9.6.jar", 61614, "0ad0c3f4d89d538b3b6c300158555e266aa69cf1b5f6522aba8b5bad238eb994"),
    Jar("com/yammer/metrics/metrics-core/2.2.0/metrics-core-2.2.0.jar", 82123, "6b7a14a6f34c10f8683f7b5e2f39df0f07b58c7dff0e468ebbc713905c46979c"),
    Jar("commons-beanutils/commons-beanutils/1.11.0/commons-beanutils-1.11.0.jar", 246806, "9e44ba68ec9a3f21286fa2a8bbb003b735c0f69101bb43144b79f4f8aaa74709"),
    Jar("commons-collections/commons-collections/3.2.2/commons-collections-3.2.2.jar", 588337, "eeeae917917144a68a741d4c0dff66aa5c5c5fd85593ff217bced3fc8ca783b8"),
    Jar("commons-digester/commons-digester/2.1/commons-digester-2.1.jar", 196768, "e0b2b980a84fc6533c5ce291f1917b32c507f62bcad64198fff44368c2196a3d"),
    Jar("commons-logging/commons-logging/1.3.5/commons-logging-1.3.5.jar", 73737, "6d7a744e4027649fbb50895df9497d109f98c766a637062fe8d2eabbb3140ba4"),
    Jar("commons-validator/commons-validator/1.10.1/commons-validator-1.10.1.jar", 203132, "ed74711a78d793ca37f6075e4a1e93d107233dfd20d0bb17e32bad88d38e56aa"),
    Jar("net/sf/jopt-simple/jopt-simple/5.0.4/jopt-simple-5.0.4.jar", 78146, "df26cc58f235f477db07f753ba5a3ab243ebe5789d9f89ecf68dd62ea9a66c28"),
    Jar("net/sourceforge/argparse4j/argparse4j/0.7.0/argparse4j-0.7.0.jar", 90347, "65ceb669d88f63306c680f8088bbf765bbca72d288a61a03703000076c3d3f56"),
    Jar("org/apache/kafka/kafka-clients/4.4.0/kafka-clients-4.4.0.jar", 10925782, "1ab07317eb6633241392449d329dbdc5d9251e6ffc4926860f42dd966e88bdf9"),
    Jar("org/apache/kafka/kafka-coordinator-common/4.4.0/kafka-coordinator-common-4.4.0.jar", 125271, "e380267a17981edbadaa2e2e785f18dc1b5671abf2d1084eb7da06a765c71d0c"),
    Jar("org/apache/kafka/kafka-group-coordinator-api/4.4.0/kafka-group-coordinator-api-4.4.0.jar", 31213, "bf11d7586c7363ba72a16ac5ef80c65365de9166469f7f6fc4ac5d2e0a98213a"),
    Jar("org/apache/kafka/kafka-group-coordinator/4.4.0/kafka-group-coordinator-4.4.0.jar", 1052839, "3fc830ace54f6a13f9f536bc0564bf39a68797365a4c4b194bd7db4fb893b2bc"),
    Jar("org/apache/kafka/kafka-metadata/4.4.0/kafka-metadata-4.4.0.jar", 870061, "6c52de74ecd670332e1e1324f5d40311275ac49b22699b6722e5fb07dd266fcb"),
    Jar("org/apache/kafka/kafka-raft/4.4.0/kafka-raft-4.4.0.jar", 338700, "687f278ce5d82b7f53644643e21e1a7452530f202826108990f0fe4f3d334d4f"),
    Jar("org/apache/kafka/kafka-server-common/4.4.0/kafka-server-common-4.4.0.jar", 411710, "e50931831a27a2f3eb6cf74e8d63cc325b4e98656f30e94f8829297951ca5080"),
    Jar("org/apache/kafka/kafka-server/4.4.0/kafka-server-4.4.0.jar", 525976, "5f5456c2976203525080220212639f7033274b94458ceabf44197f4800bd615c"),
    Jar("org/apache/kafka/kafka-share-coordinator/4.4.0/kafka-share-coordinator-4.4.0.jar", 116547, "6969a7961ca98d37a039bbe0af0fe761d6b0dd07ca9666802f47821167afbb6e"),
    Jar("org/apache/kafka/kafka-storage-api/4.4.0/kafka-storage-api-4.4.0.jar", 29795, "edd47a86cdce283fc15d033090417a5dec29642eb807713f2e807e3c46b5ca46"),
    Jar("org/apache/kafka/kafka-storage/4.4.0/kafka-storage-4.4.0.jar", 646984, "9eaa4dafacc251080ece0efa8511283da5de6931e843457f6af87f02f9b50039"),
    Jar("org/apache/kafka/kafka-tools-api/4.4.0/kafka-tools-api-4.4.0.jar", 9605, "348b63a7d22739703ad34613a1154702568d462c3a8adb1dd655482251f4e529"),
    Jar("org/apache/kafka/kafka-transaction-coordinator/4.4.0/kafka-transaction-coordinator-4.4.0.jar", 82042, "1d5324d59776d6b7f324cfdc87647b1e88f9823332201c0324e7ae9f210d915d"),
    Jar("org/apache/kafka/kafka_2.13/4.4.0/kafka_2.13-4.4.0.jar", 1333804, "76d3314f873571677ff98620ab9a431e508e3687f921a3df4f70d692a970475e"),
    Jar("org/apache/logging/log4j/log4j-api/2.25.5/log4j-api-2.25.5.jar", 351427, "64777f73ea0b3104c04eb82befbdccc30a425a19e83ad06cb2f93aa303511863"),
    Jar("org/apache/logging/log4j/log4j-core/2.25.5/log4j-core-2.25.5.jar", 2020932, "050c4f85deb48b055e9c041ac39043fbb79ce477841a11a1eb2969c86c6a0072"),
    Jar("org/apache/logging/log4j/log4j-slf4j-impl/2.25.5/log4j-slf4j-impl-2.25.5.jar", 25391, "3d25b926bc6025c47ec010459749c12aa66b9d5537ba1922d67d89a098a66607"),
    Jar("org/bitbucket/b_c/jose4j/0.9.6/jose4j-0.9.6.jar", 299502, "7314af50cde9c99e8eaf43eee617a23edcc6bb43036221064355094999d837ef"),
    Jar("org/hdrhistogram/HdrHistogram/2.2.2/HdrHistogram-2.2.2.jar", 177206, "22d1d4316c4ec13a68b559e98c8256d69071593731da96136640f864fa14fad8"),
    Jar("org/jspecify/jspecify/1.0.0/jspecify-1.0.0.jar", 3819, "1fad6e6be7557781e4d33729d49ae1cdc8fdda6fe477bb0cc68ce351eafdfbab"),
    Jar("org/pcollections/pcollections/4.0.2/pcollections-4.0.2.jar", 73718, "2bbeef5797a241300c4f7513cd546239629ed7deda4fc0c31df90bb95f5f13ef"),
    Jar("org/scala-lang/scala-library/2.13.18/scala-library-2.13.18.jar", 5940741, "4e85d96ff7bc7dc627985523c3541b9917aaa08e956391380c42db21a2c4e5a0"),
    Jar("org/scala-lang/scala-reflect/2.13.18/scala-reflect-2.13.18.jar", 3814367, "6935ff1982b2ac93d695f15aa66921be2f602921277afe002f018fd8c7d6e29b"),
    Jar("org/slf4j/slf4j-api/1.7.36/slf4j-api-1.7.36.jar", 41125, "d3ef575e3e4979678dc01bf1dcce51021493b4d11fb7f1be8ad982877c16a1c0"),
    Jar("org/xerial/snappy/snappy-java/1.1.10.7/snappy-java-1.1.10.7.jar", 2338496, "4c766cb3f855415ee734b2392949a0b6f12a60879334a74518deaf6270d32e36"),
    Jar("org/yaml/snakeyaml/2.5/snakeyaml-2.5.jar", 340015, "e6682acf1ace77508ef13649cbf4f8d09d2cf5457bdb61d25ffb6ac0233d78dd"),
)

# The waits before each further attempt at a file (so 5 attempts in all), after a refused or
# broken connection, a timeout or a 5xx answer. A module constant so tests can shorten it.
RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
# Seconds a connection or a read may stall before it counts as broken.
TIMEOUT_S = 30.0

LOCK_NAME = ".resolve.lock"
STAGING_NAME = "libs.partial"
_PART_SUFFIX = ".part"
_CHUNK = 256 * 1024
_USER_AGENT = "forewarn-kafka-dist (Python urllib)"
# A directory of jars is a broker's classpath if it holds one of these (the same globs as kafka.sh).
_BROKER_JAR_GLOBS = ("kafka_2.13-[0-9]*.jar", "kafka-server-[0-9]*.jar")
_OFFLINE_HINT = ("connect once, or set FOREWARN_KAFKA_DIST to an Apache Kafka distribution on disk "
                 "(the directory holding libs/)")


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The jars cache: FOREWARN_KAFKA_CACHE, else $XDG_CACHE_HOME/forewarn/kafka, else ~/.cache/forewarn/kafka."""
    env = os.environ if env is None else env
    explicit = env.get("FOREWARN_KAFKA_CACHE", "")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = env.get("XDG_CACHE_HOME", "")
    # The XDG base directory spec has a relative path there ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "forewarn" / "kafka"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".cache" / "forewarn" / "kafka"


def broker_libs(env: Mapping[str, str] | None = None, progress: TextIO | None = sys.stderr) -> Path:
    """The directory holding the broker's jars (the java classpath is "<dir>/*").

    FOREWARN_KAFKA_DIST, when set, names them on disk and nothing is fetched; otherwise they are
    <cache_dir>/<KAFKA_VERSION>/libs, fetched on first use with progress on `progress`.
    """
    env = os.environ if env is None else env
    dist = env.get("FOREWARN_KAFKA_DIST", "")
    if dist:
        return distribution_libs(dist)
    dest = cache_dir(env) / KAFKA_VERSION / "libs"
    return fetch(PINNED_JARS, maven_url(env), dest, what=f"Apache Kafka {KAFKA_VERSION}", progress=progress)


def distribution_libs(dist: str) -> Path:
    """The jars of the Kafka distribution FOREWARN_KAFKA_DIST names: its libs/, or the directory itself."""
    root = Path(dist).expanduser().absolute()
    if not root.is_dir():
        raise KafkaDistError(f"FOREWARN_KAFKA_DIST={dist}: no such directory; set it to an Apache Kafka "
                             f"distribution on disk (the directory holding libs/), or unset it to fetch the jars")
    for libs in (root / "libs", root):
        if libs.is_dir() and any(next(libs.glob(pattern), None) for pattern in _BROKER_JAR_GLOBS):
            return libs
    raise KafkaDistError(f"FOREWARN_KAFKA_DIST={dist}: neither {root / 'libs'} nor {root} holds "
                         f"{' or '.join(_BROKER_JAR_GLOBS)}; set it to an extracted Apache Kafka release such "
                         f"as kafka_2.13-{KAFKA_VERSION} (the directory holding libs/), or unset it to fetch the jars")


def maven_url(env: Mapping[str, str] | None = None) -> str:
    """The Maven repository to fetch from: FOREWARN_MAVEN_URL (a mirror or proxy), else Maven Central."""
    env = os.environ if env is None else env
    raw = env.get("FOREWARN_MAVEN_URL", "").strip()
    if not raw:
        return MAVEN_CENTRAL
    if not re.match(r"(?i)^(https?|file)://", raw):
        raise KafkaDistError(f"FOREWARN_MAVEN_URL={raw!r}: expected the http(s):// URL of a Maven repository "
                             f"such as {MAVEN_CENTRAL}")
    return raw if raw.endswith("/") else raw + "/"


def fetch(
    jars: Sequence[Jar],
    base_url: str,
    dest: Path,
    *,
    what: str = "the Apache Kafka jars",
    progress: TextIO | None = None,
    retry_delays: Sequence[float] | None = None,
    timeout: float | None = None,
) -> Path:
    """Put every jar of `jars`, verified, into `dest` unless it holds them already; return `dest`.

    `dest` is <cache>/<version>/libs: the lock and the staging directory are kept beside it, and
    `dest` appears only once every file is in place. `retry_delays` and `timeout` default to
    RETRY_DELAYS and TIMEOUT_S.
    """
    if _holds_all(dest, jars):
        return dest
    version_dir = dest.parent
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
        lock = open(version_dir / LOCK_NAME, "a")
    except OSError as exc:
        raise _cache_error(exc, version_dir) from None
    with lock:
        _take_lock(lock, progress)
        # Another process may have fetched everything while this one waited.
        if not _holds_all(dest, jars):
            _Fetch(jars, base_url, dest, what, progress,
                   RETRY_DELAYS if retry_delays is None else retry_delays,
                   TIMEOUT_S if timeout is None else timeout).run()
    return dest


def _holds_all(libs: Path, jars: Iterable[Jar]) -> bool:
    try:
        return all((libs / jar.name).stat().st_size == jar.size for jar in jars)
    except OSError:
        return False


def _take_lock(lock: IO[str], progress: TextIO | None) -> None:
    try:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                print(f"waiting for another process fetching the Kafka jars (it holds {lock.name})",
                      file=progress, flush=True)
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    except OSError as exc:
        raise _cache_error(exc, Path(lock.name)) from None


def _cache_error(exc: OSError, where: Path) -> KafkaDistError:
    return KafkaDistError(f"cannot write the Kafka jars cache at {exc.filename or where} "
                          f"({exc.strerror or exc}); set FOREWARN_KAFKA_CACHE to a writable directory")


class _Transient(Exception):
    """An attempt at one file failed in a way another attempt may not: it is retried."""

    def __init__(self, reason: str, progressed: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.progressed = progressed


class _Unreachable(Exception):
    """The repository cannot give a file, and asking again will not change that."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed mid-file"
    return str(exc) or type(exc).__name__


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(first byte, total or None) from a Content-Range header like "bytes 100-199/200"."""
    found = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", value or "")
    if not found:
        return None
    return int(found.group(1)), None if found.group(2) == "*" else int(found.group(2))


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _scale(size: int) -> tuple[float, str, int]:
    """How to show amounts up to `size` bytes: divisor, unit, decimals."""
    return (1e6, "MB", 1) if size >= 1_000_000 else (1e3, "kB", 0)


def _megabytes(size: int) -> str:
    divisor, unit, decimals = _scale(size)
    return f"{size / divisor:.{decimals}f} {unit}"


class _Progress:
    """Bytes done of the total: redrawn in place on a terminal, a line every 10% otherwise."""

    def __init__(self, stream: TextIO | None, total: int, done: int):
        self.stream = stream
        self.total = max(total, 1)
        self.done = done
        self.tty = stream is not None and _isatty(stream)
        self.shown = self._percent() // 10 if not self.tty else -1
        self.line_open = False
        self.divisor, self.unit, self.decimals = _scale(self.total)

    def _percent(self) -> int:
        return max(0, min(100, self.done * 100 // self.total))

    def say(self, text: str) -> None:
        if self.stream is None:
            return
        self.end_line()
        print(text, file=self.stream, flush=True)

    def end_line(self) -> None:
        """End the line redrawn in place, so that what is printed next starts a line of its own."""
        if self.line_open and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.line_open = False

    def advance(self, size: int) -> None:
        self.done += size
        if self.stream is None:
            return
        percent = self._percent()
        status = (f"  {self.done / self.divisor:.{self.decimals}f} / {self.total / self.divisor:.{self.decimals}f} "
                  f"{self.unit} ({percent}%)")
        if self.tty:
            if percent != self.shown:
                self.shown = percent
                self.stream.write(f"\r{status}   ")
                self.stream.flush()
                self.line_open = True
        elif percent // 10 > self.shown:
            self.shown = percent // 10
            print(status, file=self.stream, flush=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Fetch:
    """One fetch of every missing jar into the staging directory, under the lock."""

    def __init__(self, jars: Sequence[Jar], base_url: str, dest: Path, what: str, progress: TextIO | None,
                 retry_delays: Sequence[float], timeout: float):
        self.jars = jars
        self.base_url = base_url
        self.dest = dest
        self.staging = dest.parent / STAGING_NAME
        self.what = what
        self.stream = progress
        self.retry_delays = retry_delays
        self.timeout = timeout
        # The default handlers: http_proxy, https_proxy and no_proxy apply as usual.
        self.opener = urllib.request.build_opener()

    def run(self) -> None:
        try:
            self.staging.mkdir(exist_ok=True)
        except OSError as exc:
            raise _cache_error(exc, self.staging) from None
        # A file has its own name in the staging directory only once verified.
        todo = [jar for jar in self.jars if _file_size(self.staging / jar.name) != jar.size]
        total = sum(jar.size for jar in todo)
        resumed = sum(min(_file_size(self._part(jar)), jar.size) for jar in todo)
        self.progress = _Progress(self.stream, total, resumed)
        started = time.monotonic()
        if todo:
            resuming = f", resuming after {_megabytes(resumed)}" if resumed else ""
            self.progress.say(f"fetching {self.what}: {counted(len(todo), 'file')}, {_megabytes(total)}, "
                              f"from {self.base_url} into {self.dest} (once{resuming})")
        try:
            for jar in todo:
                self._fetch_verified(jar)
        finally:
            # An error or an interruption is then reported on a line of its own.
            self.progress.end_line()
        self._move_into_place()
        if todo:
            self.progress.say(f"fetched {counted(len(todo), 'file')} ({_megabytes(total)}) in "
                              f"{time.monotonic() - started:.1f} s")

    def _part(self, jar: Jar) -> Path:
        return self.staging / (jar.name + _PART_SUFFIX)

    def _unreachable(self, reason: str) -> KafkaDistError:
        reason = " ".join(reason.split())
        return KafkaDistError(f"cannot fetch {self.what} from {self.base_url} ({reason}), and {self.dest} "
                              f"does not hold it yet; {_OFFLINE_HINT}")

    def _fetch_verified(self, jar: Jar) -> None:
        url = self.base_url + jar.path
        part = self._part(jar)
        for attempt in (1, 2):
            self._download(jar, url, part)
            try:
                size, sha256 = part.stat().st_size, _sha256(part)
                if (size, sha256) == (jar.size, jar.sha256):
                    part.rename(self.staging / jar.name)
                    return
                # A stale or altered file: start that one over, once.
                self.progress.advance(-min(size, jar.size))
                part.unlink()
            except OSError as exc:
                raise _cache_error(exc, part) from None
            if attempt == 1:
                self.progress.say(f"{jar.name} does not match the pinned list "
                                  f"(SHA-256 {sha256}, {counted(size, 'byte')}); fetching it again")
        raise KafkaDistError(
            f"{jar.name} from {url} does not match the pinned list, twice: expected SHA-256 {jar.sha256} "
            f"({counted(jar.size, 'byte')}), got {sha256} ({counted(size, 'byte')}); a mirror or proxy on "
            f"the way may be altering it (FOREWARN_MAVEN_URL, https_proxy), or set FOREWARN_KAFKA_DIST to an "
            f"Apache Kafka distribution on disk")

    def _download(self, jar: Jar, url: str, part: Path) -> None:
        """Fill `part` with what `url` holds, resuming what it has; retry transient failures."""
        failures = 0
        while _file_size(part) < jar.size:
            try:
                self._request_into(url, part, _file_size(part))
                return
            except _Unreachable as exc:
                raise self._unreachable(str(exc)) from None
            except _Transient as exc:
                # A connection that keeps breaking but brings bytes each time is slow, not down.
                failures = 1 if exc.progressed else failures + 1
                if failures > len(self.retry_delays):
                    raise self._unreachable(f"{jar.name}: {exc.reason}; {counted(failures, 'attempt')}") from None
                delay = self.retry_delays[failures - 1]
                self.progress.say(f"{jar.name}: {exc.reason}; trying again in {delay:g} s")
                time.sleep(delay)

    def _request_into(self, url: str, part: Path, have: int) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416:
                # The part is longer than the file there: start it over (verification will tell).
                self._start_over(part, have)
                raise _Transient(f"HTTP 416 for a range from byte {have}") from None
            if exc.code >= 500:
                raise _Transient(f"HTTP {exc.code} {exc.reason} from {url}") from None
            raise _Unreachable(f"HTTP {exc.code} {exc.reason} for {url}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise _Unreachable(f"{exc.reason.verify_message or exc.reason}: {url}") from None
            raise _Transient(_reason(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(_reason(exc)) from None
        with response:
            status = getattr(response, "status", None)
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            if status == 206:
                first, _ = _content_range(response.headers.get("Content-Range")) or (None, None)
                if first != have:
                    self._start_over(part, have)
                    raise _Transient(f"asked for bytes from {have}, got {response.headers.get('Content-Range')}")
                mode = "ab"
            else:
                # A whole file (200): the server ignored the range, or none was asked for.
                self._start_over(part, have)
                have, mode = 0, "wb"
            received = 0
            try:
                out = open(part, mode)
            except OSError as exc:
                raise _cache_error(exc, part) from None
            with out:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Transient(_reason(exc), progressed=received > 0) from None
                    if not chunk:
                        break
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise _cache_error(exc, part) from None
                    received += len(chunk)
                    self.progress.advance(len(chunk))
                try:
                    out.flush()
                    os.fsync(out.fileno())
                except OSError as exc:
                    raise _cache_error(exc, part) from None
        if expected is not None and received < expected:
            raise _Transient(f"connection closed after {have + received} of {counted(have + expected, 'byte')}",
                             progressed=received > 0)

    def _start_over(self, part: Path, have: int) -> None:
        if not have:
            return
        try:
            part.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _cache_error(exc, part) from None
        self.progress.advance(-have)

    def _move_into_place(self) -> None:
        wanted = {jar.name for jar in self.jars}
        try:
            for entry in self.staging.iterdir():
                if entry.name not in wanted:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            if self.dest.exists():
                # An incomplete or damaged libs/: swapped out in one rename, then removed.
                old = self.dest.with_name(f"libs.old.{os.getpid()}")
                self.dest.rename(old)
                self.staging.rename(self.dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                self.staging.rename(self.dest)
        except OSError as exc:
            raise _cache_error(exc, self.staging) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.kafka_dist",
        description=f"The jars of the Apache Kafka {KAFKA_VERSION} broker, fetched once from Maven Central.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "environment:\n"
            "  FOREWARN_KAFKA_DIST   an Apache Kafka distribution on disk (the directory holding libs/):\n"
            "                        used as it is, nothing is fetched\n"
            "  FOREWARN_KAFKA_CACHE  the cache (default $XDG_CACHE_HOME/forewarn/kafka or ~/.cache/forewarn/kafka)\n"
            f"  FOREWARN_MAVEN_URL    a mirror or proxy of Maven Central (default {MAVEN_CENTRAL})\n"
            "  https_proxy, no_proxy as for any urllib client"
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("fetch", help="fetch the jars unless cached; print the directory holding them",
                        description="Fetch the jars unless cached (progress on stderr); print the directory "
                                    "holding them on stdout.")
    parser.parse_args(argv)
    try:
        libs = broker_libs(progress=sys.stderr)
    except KafkaDistError as exc:
        print(f"kafka_dist: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kafka_dist: interrupted; the next run resumes where this one stopped", file=sys.stderr)
        return 130
    print(libs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
