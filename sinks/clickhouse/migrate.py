"""The store's schema: versioned DDL files under ddl/, applied in order and idempotently.

Files are named ``NNNN_what.sql`` and hold statements separated by a ``;`` at
the end of a line. Every statement is safe to run twice (``IF NOT EXISTS``,
``CREATE OR REPLACE VIEW``), so a run interrupted half-way through a file is
finished by the next. Each applied file is recorded with its checksum in
``forewarn_schema_migrations``; a file is never edited once released, so a
recorded file whose text changed is refused: add a new file instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

DDL_DIR = Path(__file__).with_name("ddl")
LEDGER = "forewarn_schema_migrations"
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """A DDL file is malformed, changed after it was applied, or failed; the message names it."""


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self) -> list[str]:
        without_comments = "\n".join(line for line in self.text.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*$", without_comments, flags=re.MULTILINE) if s.strip()]


def migrations(directory: Path = DDL_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: DDL files must be named NNNN_name.sql (lower case)")
        found.append(Migration(int(match.group(1)), path, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two DDL files share a version number: {versions}")
    return found


def apply_migrations(client, directory: Path = DDL_DIR) -> list[str]:
    """Bring the store's schema up to date; returns the names of the files applied now."""
    client.command(
        f"CREATE TABLE IF NOT EXISTS {LEDGER} (version UInt32, name String, checksum String, "
        f"applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
    )
    applied = {row[0]: (row[1], row[2]) for row in
               client.query(f"SELECT version, any(name), any(checksum) FROM {LEDGER} GROUP BY version").result_rows}
    done = []
    for migration in migrations(directory):
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded[1] != migration.checksum:
                raise MigrationError(
                    f"{migration.path.name} changed after it was applied to this store (recorded as {recorded[0]}); "
                    f"released DDL files are never edited: put the change in a new file"
                )
            continue
        for n, statement in enumerate(migration.statements(), start=1):
            try:
                client.command(statement)
            except Exception as exc:  # noqa: BLE001 - reported with the file and statement that failed
                first_line = statement.splitlines()[0]
                raise MigrationError(f"{migration.path.name}: statement {n} ({first_line}) failed: {exc}") from exc
        client.insert(LEDGER, [(migration.version, migration.path.name, migration.checksum)],
                      column_names=["version", "name", "checksum"])
        done.append(migration.path.name)
    return done
