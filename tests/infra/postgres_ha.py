"""A real PostgreSQL pair for tests: a primary and a synchronous streaming standby (`standby1`) on free
loopback ports in a temporary directory, from the Debian server binaries, run as the `postgres` user."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from tests.infra import ports as port_registry
from tests.infra.certs import Authority, write_pair

POLL = 0.05
STANDBY_NAME = "standby1"
DATABASE = "xrouter"
ROLE = "xrouter"
# Settings for the primary go on the command line, not in postgresql.conf: pg_basebackup copies the
# config file, and a promoted standby that inherited synchronous_standby_names would hang on commit.
PRIMARY_SETTINGS = {
    "wal_level": "replica", "max_wal_senders": "5", "synchronous_commit": "on",
    "synchronous_standby_names": STANDBY_NAME, "fsync": "off", "full_page_writes": "off",
}
STANDBY_SETTINGS = {"hot_standby": "on", "fsync": "off", "full_page_writes": "off"}
PG_HBA = """\
local all all trust
local replication all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


class PostgresError(RuntimeError):
    """The cluster did not reach the expected state in time, or a server tool failed."""


def bindir() -> Path:
    """Where initdb, postgres and friends live: $XROUTER_PG_BIN, else the newest Debian server."""
    if configured := os.environ.get("XROUTER_PG_BIN"):
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise PostgresError("no PostgreSQL server binaries: install `postgresql` or set XROUTER_PG_BIN")
    return Path(found[-1]).parent


def _as_postgres() -> list[str]:
    """Run as `postgres` when we are root (the server refuses root); setpriv execs in place, so the
    Popen handle is the postmaster itself, and --pdeathsig kills it if the test process dies."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups",
            "--pdeathsig", "KILL", "--"]


def free_ports(count: int) -> list[int]:
    return port_registry.free_ports(count)  # tests/infra/ports.py: why not the kernel's port 0


def _settings(values: dict[str, str]) -> list[str]:
    return [arg for name, value in values.items() for arg in ("-c", f"{name}={value}")]


class PostgresHA:
    """Start with start(); always stop() (the pytest fixtures do). Node 0 starts as the primary,
    node 1 as its synchronous standby."""

    def __init__(self, *, tls: bool = False) -> None:
        # tls: every TCP connection must use TLS (hostssl), the server's certificate comes from a
        # throwaway CA whose file is `ca_file`, and conninfo() verifies it (verify-full).
        self.tls = tls
        self.ca_file: Path | None = None
        self.ports: list[int] = []
        self._bin = bindir()
        self._dir: Path | None = None
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- connection strings -------------------------------------------------------------------------

    def conninfo(self, node: int, dbname: str = DATABASE, user: str = ROLE) -> str:
        return (f"host=127.0.0.1 port={self.ports[node]} dbname={dbname} user={user} "
                f"connect_timeout=2{self._verify()}")

    def _verify(self) -> str:
        return "" if self.ca_file is None else f" sslmode=verify-full sslrootcert={self.ca_file}"

    @property
    def primary(self) -> str:
        return self.conninfo(0)

    @property
    def standby(self) -> str:
        return self.conninfo(1)

    def multi_host(self, dbname: str = DATABASE) -> str:
        """Both nodes; libpq tries them in order and keeps the one that accepts writes."""
        ports = ",".join(str(p) for p in self.ports)
        return (f"host=127.0.0.1,127.0.0.1 port={ports} dbname={dbname} user={ROLE} "
                f"target_session_attrs=read-write connect_timeout=2{self._verify()}")

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> PostgresHA:
        deadline = time.monotonic() + timeout
        self._dir = Path(tempfile.mkdtemp(prefix="xr-pg-ha-"))
        if os.geteuid() == 0:
            shutil.chown(self._dir, "postgres", "postgres")
        self.ports = free_ports(2)
        try:
            self._initdb(self._data(0), deadline)
            if self.tls:
                self._make_certificate()
            self._spawn(0, PRIMARY_SETTINGS)
            self._wait_accepting(0, deadline, PRIMARY_SETTINGS)
            self._run([self._tool("pg_basebackup"), "-D", str(self._data(1)), "-R", "-X", "stream",
                       "-c", "fast", "--no-sync", "-d", self._replication_conninfo(0)], deadline)
            self._spawn(1, STANDBY_SETTINGS)
            self._wait_accepting(1, deadline, STANDBY_SETTINGS)
            self.wait_sync(deadline - time.monotonic())
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown of every node still running (SIGKILL after 10 s), then remove the files."""
        for node in list(self._procs):
            self._stop_node(node, kill=False)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def stop_primary(self, *, kill: bool = False) -> None:
        """Stop node 0: a fast shutdown (SIGINT), or SIGKILL (a crash) with kill=True."""
        self._stop_node(0, kill=kill)

    def promote_standby(self, timeout: float = 30.0) -> None:
        """`pg_ctl promote` node 1, then wait until it accepts writes."""
        deadline = time.monotonic() + timeout
        self._run([self._tool("pg_ctl"), "promote", "-D", str(self._data(1)), "-w",
                   "-t", str(max(1, int(timeout)))], deadline)

        def writable() -> bool:
            try:
                with self._admin(1) as conn:
                    return conn.execute("SELECT txid_current()").fetchone() is not None
            except psycopg.Error:
                return False
        self._wait(writable, deadline, "the promoted standby to accept writes")

    def wait_sync(self, timeout: float = 30.0) -> None:
        """Until the primary reports standby1 streaming with sync_state 'sync'."""
        def synced() -> bool:
            try:
                with self._admin(0) as conn:
                    row = conn.execute(
                        "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                        (STANDBY_NAME,)).fetchone()
            except psycopg.Error:
                return False
            return row == ("streaming", "sync")
        self._wait(synced, time.monotonic() + timeout, "a streaming synchronous standby")

    def pids(self) -> dict[int, int]:
        """Process id of each running node's postmaster, by node (0: started as the primary)."""
        return {node: proc.pid for node, proc in self._procs.items()}

    def data_dir(self, node: int) -> Path:
        return self._data(node)

    def create_database(self, name: str) -> None:
        """A fresh database owned by the xrouter role, already usable on the standby on return."""
        with self._admin(0) as conn:
            conn.execute("SET synchronous_commit = remote_apply")
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)))

    # -- internals ----------------------------------------------------------------------------------

    def _data(self, node: int) -> Path:
        assert self._dir is not None
        return self._dir / f"node{node}"

    def _tool(self, name: str) -> str:
        return str(self._bin / name)

    def _replication_conninfo(self, node: int) -> str:
        # -R writes this into the standby's primary_conninfo: application_name names it standby1.
        return (f"host=127.0.0.1 port={self.ports[node]} user=postgres "
                f"application_name={STANDBY_NAME}{self._verify()}")

    def _admin(self, node: int, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.conninfo(node, dbname, "postgres"), autocommit=True)

    def _run(self, argv: list[str], deadline: float) -> None:
        remaining = max(1.0, deadline - time.monotonic())
        try:
            done = subprocess.run([*_as_postgres(), *argv], capture_output=True, timeout=remaining,
                                  check=False, cwd=self._dir, env=self._env())
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(f"{Path(argv[0]).name} took longer than {remaining:.0f}s") from exc
        if done.returncode != 0:
            raise PostgresError(f"{Path(argv[0]).name} failed ({done.returncode}): "
                                f"{(done.stdout + done.stderr)[-2000:].decode(errors='replace')}")

    def _initdb(self, data: Path, deadline: float) -> None:
        self._run([self._tool("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], deadline)
        (data / "pg_hba.conf").write_text(PG_HBA)

    def _make_certificate(self) -> None:
        """A CA and the nodes' certificate (127.0.0.1), the key readable by `postgres` only."""
        assert self._dir is not None
        ca = Authority("xrouter-test-pg-ca")
        self.ca_file = self._dir / "ca.crt"
        self.ca_file.write_bytes(ca.pem)
        cert, key = write_pair(self._dir, "server", ca.issue("postgres"))
        if os.geteuid() == 0:
            for path in (cert, key):
                shutil.chown(path, "postgres", "postgres")
        (self._data(0) / "pg_hba.conf").write_text(PG_HBA.replace("host ", "hostssl "))

    def _env(self) -> dict[str, str] | None:
        """With TLS, HOME in the test directory: libpq would look for a client certificate in
        the invoking user's ~/.postgresql, which `postgres` may not read."""
        return None if not self.tls else {**os.environ, "HOME": str(self._dir)}

    def _tls_settings(self) -> dict[str, str]:
        if self._dir is None or not self.tls:
            return {}
        return {"ssl": "on", "ssl_cert_file": str(self._dir / "server.crt"),
                "ssl_key_file": str(self._dir / "server.key")}

    def _spawn(self, node: int, settings: dict[str, str]) -> None:
        assert self._dir is not None
        log = (self._dir / f"node{node}.log").open("ab")
        options = {"port": str(self.ports[node]), "listen_addresses": "127.0.0.1",
                   "unix_socket_directories": str(self._dir), **self._tls_settings(), **settings}
        self._procs[node] = subprocess.Popen(
            [*_as_postgres(), self._tool("postgres"), "-D", str(self._data(node)), *_settings(options)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self._dir, env=self._env())
        log.close()

    def _wait_accepting(self, node: int, deadline: float, settings: dict[str, str]) -> None:
        """Until the node accepts connections. Its port was chosen free, then closed, then bound
        by postgres: in between another process may take it (an outgoing connection's ephemeral
        port, say), and the node exits at once. It is started again on another port (as
        tests/infra/redis_cluster.py does); a node that exited for any other reason is an error."""
        def accepting() -> bool:
            proc = self._procs[node]
            if proc.poll() is not None:
                log = self._log_tail(node)
                if "Address already in use" not in log:
                    raise PostgresError(f"node {node} exited with {proc.returncode}: {log}")
                self.ports[node] = next(p for p in free_ports(3) if p not in self.ports)
                assert self._dir is not None
                (self._dir / f"node{node}.log").unlink()  # what the next start says is new
                self._spawn(node, settings)
                return False
            try:
                with self._admin(node):
                    return True
            except psycopg.OperationalError:
                return False
        self._wait(accepting, deadline, f"node {node} to accept connections")

    def _create_database(self) -> None:
        with self._admin(0) as conn:
            conn.execute("SET synchronous_commit = remote_apply")
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ROLE)))
        self.create_database(DATABASE)

    def _stop_node(self, node: int, *, kill: bool) -> None:
        proc = self._procs.pop(node, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)  # SIGINT: fast shutdown
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _log_tail(self, node: int) -> str:
        assert self._dir is not None
        path = self._dir / f"node{node}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    @staticmethod
    def _wait(done: Callable[[], bool], deadline: float, what: str) -> None:
        while not done():
            if time.monotonic() > deadline:
                raise PostgresError(f"timed out waiting for {what}")
            time.sleep(POLL)


class DurablePostgresHA(PostgresHA):
    """The pair with production durability, for benchmarks: fsync and full page writes on (the
    tests turn them off for speed). Commits still wait for the synchronous standby."""

    def _spawn(self, node: int, settings: dict[str, str]) -> None:
        super()._spawn(node, {**settings, "fsync": "on", "full_page_writes": "on"})
