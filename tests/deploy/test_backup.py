"""deploy/backup: xrouter-backup.sh against a real PostgreSQL, restored by xrouter-restore.sh into a
fresh cluster (a new initdb), the rotation that deletes only its own old files, and failures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.infra.postgres_ha import PostgresError, PostgresHA, bindir, free_ports
from tests.support import ROOT, free_port

BACKUP = ROOT / "deploy" / "backup" / "xrouter-backup.sh"
RESTORE = ROOT / "deploy" / "backup" / "xrouter-restore.sh"
NAME = re.compile(r"xrouter-pg-\d{8}T\d{6}Z\.sql\.gz")
DAY = 24 * 3600
ROWS = 250


class SinglePostgres(PostgresHA):
    """One node of PostgresHA's kind, no standby: just what pg_dumpall and a restore need."""

    def start(self, timeout: float = 60.0) -> SinglePostgres:
        deadline = time.monotonic() + timeout
        self._dir = Path(tempfile.mkdtemp(prefix="xr-pg-single-"))
        if os.geteuid() == 0:
            shutil.chown(self._dir, "postgres", "postgres")
        self.ports = free_ports(1)
        try:
            self._initdb(self._data(0), deadline)
            settings = {"fsync": "off", "full_page_writes": "off"}
            self._spawn(0, settings)
            self._wait_accepting(0, deadline, settings)
        except BaseException:
            self.stop()
            raise
        return self

    def env(self) -> dict[str, str]:
        """libpq's variables for the superuser over TCP (trust: no password in these tests)."""
        return {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(self.ports[0]), "PGUSER": "postgres"}


def _require_postgres() -> None:
    try:
        bindir()
    except PostgresError as exc:
        pytest.skip(str(exc))
    for tool in ("pg_dumpall", "psql"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: postgresql-client)")


@pytest.fixture
def source() -> Iterator[SinglePostgres]:
    """A cluster with the xrouter role and database, and a table of ROWS rows in it."""
    _require_postgres()
    pg = SinglePostgres().start()
    try:
        pg._create_database()
        with psycopg.connect(pg.conninfo(0), autocommit=True) as conn:
            conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL)")
            conn.execute("INSERT INTO ledger SELECT n, 'entry ' || n FROM generate_series(1, %s) n", (ROWS,))
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def fresh() -> Iterator[SinglePostgres]:
    _require_postgres()
    pg = SinglePostgres().start()
    try:
        yield pg
    finally:
        pg.stop()


def run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def backups(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if NAME.fullmatch(p.name))


def age(path: Path, days: float) -> None:
    """`touch -d '<days> days ago'`."""
    when = time.time() - days * DAY
    os.utime(path, (when, when))


def test_backup_then_restore_into_a_fresh_cluster(source: SinglePostgres, fresh: SinglePostgres,
                                                  tmp_path: Path) -> None:
    target_dir = tmp_path / "backups"
    done = run(BACKUP, {**source.env(), "BACKUP_DIR": str(target_dir)})
    assert done.returncode == 0, done.stderr
    [written] = backups(target_dir)
    assert done.stdout.startswith(f"xrouter-backup: wrote {written} (")
    assert written.stat().st_mode & 0o777 == 0o600  # the dump holds password hashes
    assert sorted(p.name for p in target_dir.iterdir()) == [written.name]  # no partial file left

    restored = run(RESTORE, fresh.env(), str(written))
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(fresh.conninfo(0)) as conn:
        count, notes = conn.execute("SELECT count(*), count(DISTINCT note) FROM ledger").fetchone() or (0, 0)
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'xrouter'"
                             ).fetchone()
    assert (count, notes, owner) == (ROWS, ROWS, ("xrouter",))

    again = run(RESTORE, fresh.env(), str(written))
    assert again.returncode == 1
    assert "the target cluster is not fresh (databases: xrouter)" in again.stderr


def test_rotation_deletes_only_old_backups_of_its_own(source: SinglePostgres, tmp_path: Path) -> None:
    directory = tmp_path / "backups"
    directory.mkdir()
    names = {"old": "xrouter-pg-20200101T031500Z.sql.gz", "recent": "xrouter-pg-20200108T031500Z.sql.gz",
             "foreign": "full_backup_20200101_031500.sql", "manual": "xrouter-pg-manual.sql.gz",
             "stale_partial": ".xrouter-pg-20200101T031500Z.AbC123.partial",
             "fresh_partial": ".xrouter-pg-20200109T031500Z.XyZ789.partial"}
    for label, name in names.items():
        (directory / name).write_bytes(b"x")
        age(directory / name, {"recent": 6.5, "fresh_partial": 0.5}.get(label, 8.0))
    done = run(BACKUP, {**source.env(), "BACKUP_DIR": str(directory), "RETENTION_DAYS": "7"})
    assert done.returncode == 0, done.stderr
    assert f"xrouter-backup: removed old backup {directory / names['old']}" in done.stdout
    left = {p.name for p in directory.iterdir()}
    [new] = [n for n in left if n not in names.values()]
    assert NAME.fullmatch(new)
    assert left - {new} == {names[k] for k in ("recent", "foreign", "manual", "fresh_partial")}


def test_a_failed_dump_writes_nothing_and_keeps_old_backups(tmp_path: Path) -> None:
    _require_postgres()
    directory = tmp_path / "backups"
    directory.mkdir()
    old = directory / "xrouter-pg-20200101T031500Z.sql.gz"
    old.write_bytes(b"x")
    age(old, 30)
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(free_port()), "PGUSER": "postgres",
           "PGCONNECT_TIMEOUT": "2", "BACKUP_DIR": str(directory)}
    done = run(BACKUP, env)
    assert done.returncode == 1
    assert "xrouter-backup: pg_dumpall failed; no backup written (previous backups kept)" in done.stderr
    assert [p.name for p in directory.iterdir()] == [old.name]


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("RETENTION_DAYS", "seven", "RETENTION_DAYS must be a whole number of days (got 'seven')"),
    ("RETENTION_DAYS", "-1", "RETENTION_DAYS must be a whole number of days (got '-1')"),
])
def test_bad_settings_are_refused(tmp_path: Path, variable: str, value: str, message: str) -> None:
    done = run(BACKUP, {**os.environ, "BACKUP_DIR": str(tmp_path), variable: value})
    assert (done.returncode, done.stderr.strip()) == (1, f"xrouter-backup: {message}")
    assert list(tmp_path.iterdir()) == []


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    junk = tmp_path / "xrouter-pg-20200101T031500Z.sql.gz"
    junk.write_text("not gzip")
    assert run(RESTORE, dict(os.environ)).returncode == 1
    done = run(RESTORE, dict(os.environ), str(junk))
    assert done.returncode == 1
    assert f"xrouter-restore: {junk} is not a valid gzip file" in done.stderr
