"""A real Redis Cluster for tests: six `redis-server` processes (3 masters, 3 replicas) on free
loopback ports in a temporary directory, joined with `redis-cli --cluster create`. With
`tls=True` the nodes speak TLS only (clients, the cluster bus and replication), from a
throwaway CA, and require a client certificate from it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.infra import ports as port_registry
from tests.infra.certs import Authority, write_pair
from xrouter_common.tls import CertFiles

NODES = 6
POLL = 0.05
# A killed test run must not leave Redis servers behind: they die with the test process.
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class ClusterError(RuntimeError):
    """The cluster did not reach the expected state in time."""


def free_ports(count: int) -> list[int]:
    """Ports P whose cluster bus port P + 10000 is free too (tests/infra/ports.py)."""
    return port_registry.free_ports(count, bus=True)


class RedisCluster:
    """Start with start(); always stop() (the pytest fixture does)."""

    def __init__(self, *, tls: bool = False) -> None:
        self.tls = tls
        # The router's side when tls: its client certificate, key and the CA that signs the nodes.
        self.client_tls: CertFiles | None = None
        self._server_tls: CertFiles | None = None
        self.ports: list[int] = []
        self._dir: Path | None = None
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._clients: dict[int, redis.Redis] = {}

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.ports[0]}"

    def _make_certificates(self, directory: Path) -> None:
        ca = Authority("xrouter-test-redis-ca")
        (directory / "ca.crt").write_bytes(ca.pem)
        cert, key = write_pair(directory, "redis", ca.issue("redis", peer=True))
        self._server_tls = CertFiles(cert, key, directory / "ca.crt")
        cert, key = write_pair(directory, "client", ca.issue("xrouter", client=True))
        self.client_tls = CertFiles(cert, key, directory / "ca.crt")

    def _cli_tls(self) -> list[str]:
        files = self.client_tls
        if files is None:
            return []
        return ["--tls", "--cacert", str(files.ca), "--cert", str(files.cert), "--key", str(files.key)]

    def start(self, timeout: float = 30.0) -> RedisCluster:
        self._dir = Path(tempfile.mkdtemp(prefix="xr-redis-cluster-"))
        if self.tls:
            self._make_certificates(self._dir)
        self.ports = free_ports(NODES)
        try:
            for port in self.ports:
                self._spawn(port)
            self._wait(self._nodes_accept, timeout, "nodes to accept")
            create = subprocess.run(
                ["redis-cli", *self._cli_tls(), "--cluster", "create",
                 *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "1", "--cluster-yes"],
                capture_output=True, timeout=timeout, check=False)
            if create.returncode != 0:
                raise ClusterError(f"redis-cli --cluster create failed: {create.stdout[-2000:]!r}")
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        for proc in self._procs.values():
            proc.wait()
        self._procs.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def pids(self) -> dict[int, int]:
        """Process id of each running node, by port."""
        return {port: proc.pid for port, proc in self._procs.items()}

    def master_ports(self) -> list[int]:
        """Ports of the live masters, as a live node sees them."""
        return sorted({port for _, _, port in self._slots()})

    def master_of(self, key: str) -> int:
        """Port of the master serving `key`."""
        slot = int(self._client(self._live()[0]).cluster("KEYSLOT", key))
        for start, end, port in self._slots():
            if start <= slot <= end:
                return port
        raise ClusterError(f"slot {slot} is not served")

    def kill_master(self, port: int) -> None:
        if port not in self.master_ports():
            raise ValueError(f"{port} is not a master")
        proc = self._procs[port]
        proc.kill()
        proc.wait()

    def hold_failover(self, master: int) -> int:
        """Forbid the replica of `master` to promote itself, and return its port: a test that
        kills `master` then decides when the failover happens (take_over), instead of racing
        the cluster's own failure detection."""
        replica = self.replica_of(master)
        self._client(replica).config_set("cluster-replica-no-failover", "yes")
        return replica

    def take_over(self, replica: int) -> None:
        """Promote `replica` now (its master is dead, so no agreement is sought), let it fail
        over on its own again, and wait until the cluster serves every slot from live nodes."""
        client = self._client(replica)
        client.cluster("FAILOVER", "TAKEOVER")
        client.config_set("cluster-replica-no-failover", "no")
        self.wait_failover()

    def replica_of(self, master: int) -> int:
        """Port of the online replica of `master`."""
        info = self._client(master).info("replication")
        for name, value in info.items():
            if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online":
                return int(value["port"])
        raise ClusterError(f"{master} has no online replica")

    def wait_failover(self, timeout: float = 20.0) -> None:
        """Until every live node reports cluster_state:ok and only live nodes serve slots."""
        def done() -> bool:
            live = set(self._live())
            return self._all_ok() and all(port in live for _, _, port in self._slots())
        self._wait(done, timeout, "failover")

    def restart(self, port: int, timeout: float = 20.0) -> None:
        """Restart a killed node (it rejoins as a replica) and wait until the cluster is whole."""
        self._spawn(port)
        for live in self._live():  # a test that failed between hold_failover and take_over
            if live != port:
                self._client(live).config_set("cluster-replica-no-failover", "no")
        self.wait_healthy(timeout)

    def pause(self, port: int) -> None:
        """SIGSTOP one node: it keeps its connections and answers nothing (a replica that
        cannot acknowledge, here)."""
        self._procs[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self._procs[port].send_signal(signal.SIGCONT)

    def freeze(self) -> None:
        """SIGSTOP every node: connections stay open, nothing answers (a hung Redis)."""
        for proc in self._procs.values():
            proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for proc in self._procs.values():
            proc.send_signal(signal.SIGCONT)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until all six nodes report cluster_state:ok and every master has an online replica."""
        def done() -> bool:
            return len(self._live()) == NODES and self._all_ok() and self._replicated()
        self._wait(done, timeout, "a healthy cluster")

    def _spawn(self, port: int) -> None:
        assert self._dir is not None
        log = (self._dir / f"redis-{port}.log").open("ab")
        self._procs[port] = subprocess.Popen(
            [*_DIE_WITH_PARENT, "redis-server", "--cluster-enabled", "yes", "--cluster-node-timeout", "1500",
             "--repl-diskless-sync-delay", "0", "--save", "", "--appendonly", "no",
             "--protected-mode", "no", "--bind", "127.0.0.1", *self._listen(port),
             "--cluster-config-file", f"nodes-{port}.conf", "--dir", str(self._dir),
             "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def _listen(self, port: int) -> list[str]:
        files = self._server_tls
        if files is None:
            return ["--port", str(port)]
        return ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(files.cert),
                "--tls-key-file", str(files.key), "--tls-ca-cert-file", str(files.ca),
                "--tls-cluster", "yes", "--tls-replication", "yes", "--tls-auth-clients", "yes"]

    def _client(self, port: int) -> redis.Redis:
        client = self._clients.get(port)
        if client is None:
            files = self.client_tls
            tls: dict[str, object] = {} if files is None else {
                "ssl": True, "ssl_ca_certs": str(files.ca), "ssl_certfile": str(files.cert),
                "ssl_keyfile": str(files.key)}
            client = redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0,
                                 decode_responses=True, **tls)  # type: ignore[arg-type]
            self._clients[port] = client
        return client

    def _live(self) -> list[int]:
        return [p for p in self.ports if p in self._procs and self._procs[p].poll() is None]

    def _nodes_accept(self) -> bool:
        """Whether every node answers. A port is chosen free, then closed, then bound by
        redis-server: in between another process may take it (an outgoing connection's
        ephemeral port, say), and that node exits at once. It is started again on other ports;
        a node that exited for any other reason is an error."""
        for i, port in enumerate(self.ports):
            if self._procs[port].poll() is None:
                continue
            assert self._dir is not None
            log = (self._dir / f"redis-{port}.log").read_text(errors="replace")
            if "Address already in use" not in log:
                raise ClusterError(f"redis-server on port {port} exited: {log[-1000:]}")
            del self._procs[port]
            self.ports[i] = next(p for p in free_ports(NODES + 1) if p not in self.ports)
            self._spawn(self.ports[i])
        return all(self._ping(p) for p in self.ports)

    def _ping(self, port: int) -> bool:
        try:
            return bool(self._client(port).ping())
        except redis.RedisError:
            return False

    def _cluster_state(self, port: int) -> str:
        reply = self._client(port).cluster("INFO")
        if isinstance(reply, dict):  # redis-py parses the reply, or not, depending on version
            return str(reply.get("cluster_state"))
        return "ok" if "cluster_state:ok" in str(reply) else "fail"

    def _all_ok(self) -> bool:
        try:
            return all(self._cluster_state(p) == "ok" for p in self._live())
        except redis.RedisError:
            return False

    def _replicated(self) -> bool:
        try:
            masters = self.master_ports()
            if len(masters) != NODES // 2:
                return False
            for port in masters:
                info = self._client(port).info("replication")
                replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
                if not any(r.get("state") == "online" for r in replicas):
                    return False
        except redis.RedisError:
            return False
        return True

    def _slots(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master port) as the first live node sees them."""
        for port in self._live():
            try:
                rows = self._client(port).cluster("SLOTS")
            except redis.RedisError:
                continue
            if isinstance(rows, dict):  # redis-py may parse the reply into a mapping
                return [(int(a), int(b), int(v["primary"][1])) for (a, b), v in rows.items()]
            return [(int(r[0]), int(r[1]), int(r[2][1])) for r in rows]
        raise ClusterError("no live node answers CLUSTER SLOTS")

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout}s waiting for {what}; "
                                   f"logs in {self._dir}")
            time.sleep(POLL)


class AttachedCluster(RedisCluster):
    """A cluster some other process started (`make run-cluster`: its cluster.json gives the ports
    and pids): the same queries and waits; a node is live while its process is."""

    def __init__(self, pids: dict[int, int]) -> None:
        super().__init__()
        self.ports = sorted(pids)
        self._pids = dict(pids)

    def pids(self) -> dict[int, int]:
        return dict(self._pids)

    def _live(self) -> list[int]:
        return [p for p in self.ports if process_alive(self._pids[p])]

    def kill_master(self, port: int) -> None:
        if port not in self.master_ports():
            raise ValueError(f"{port} is not a master")
        os.kill(self._pids[port], signal.SIGKILL)
        self._wait(lambda: not process_alive(self._pids[port]), 10.0, f"{port} to die")


def process_alive(pid: int) -> bool:
    """False for a dead process and for a zombie its parent has not reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return False
