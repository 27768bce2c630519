"""`make run-cluster`: the production topology on 127.0.0.1 from the Debian binaries, for trying
it and for the chaos drill in docs/operations.md: a Redis Cluster of 3 masters + 3 replicas, a
PostgreSQL primary with a synchronous standby (fsync on), the migrations, two routers and one
gateway in front of both, the demo model, a funded demo account and its key.

Everything lives in a temporary directory and is removed on exit; Ctrl-C (or SIGTERM) stops
every process this started. The ports, process ids and data directories are printed and
written to $XROUTER_CLUSTER_DIR/cluster.json (default .xrouter-cluster/) for the drill.
The servers are the test suite's own (tests/infra), so the drill runs what CI runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "bin"
ROUTERS = 2

sys.path.insert(0, str(ROOT))  # tests.infra: the same servers as the tests
from tests.infra.postgres_ha import DurablePostgresHA, bindir, free_ports  # noqa: E402
from tests.infra.redis_cluster import RedisCluster  # noqa: E402


class Stopped(Exception):
    """SIGTERM: leave the way Ctrl-C does."""


def _on_term(signum: int, frame: object) -> None:
    raise Stopped


# If this script is killed outright, the services die with it (SIGTERM from the kernel).
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


def _spawn(module: str, env: dict[str, str], log: Path,
           logs: dict[subprocess.Popen[bytes], Path]) -> subprocess.Popen[bytes]:
    """The service `module`, writing to `log`; `logs` gets it (for _wait_ready)."""
    with log.open("ab") as out:
        # A process group of its own: Ctrl-C reaches this script only, which stops the children
        # in order (the gateway first, then the routers, then the servers).
        proc = subprocess.Popen([*_DIE_WITH_PARENT, str(VENV / "python"), "-m", module], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    logs[proc] = log
    return proc


def _spawn_routers(base_env: dict[str, str], home: Path, ports: list[int],
                   procs: list[subprocess.Popen[bytes]],
                   logs: dict[subprocess.Popen[bytes], Path]) -> list[dict[str, Any]]:
    """ROUTERS routers (listen on ports[i], metrics on ports[ROUTERS + i]), added to `procs`."""
    routers = []
    for i in range(ROUTERS):
        listen = f"127.0.0.1:{ports[i]}"
        env = {**base_env, "XROUTER_ROUTER_LISTEN": listen, "XROUTER_DATA_DIR": str(home / f"r{i}"),
               "XROUTER_ROUTER_METRICS_PORT": str(ports[ROUTERS + i])}
        procs.append(_spawn("xrouter_router", env, home / f"router{i}.log", logs))
        routers.append({"listen": listen, "metrics": ports[ROUTERS + i], "pid": procs[-1].pid})
    return routers


def _wait_ready(url: str, logs: dict[subprocess.Popen[bytes], Path], bound: float = 60.0) -> None:
    """Until `url` answers 200; a service that exits first is named with the end of its log."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        for proc, log in logs.items():
            if proc.poll() is not None:
                tail = "".join(log.read_text(errors="replace").splitlines(True)[-30:])
                raise SystemExit(f"run-cluster: a service exited while starting (exit code "
                                 f"{proc.returncode}); the end of {log}:\n{tail}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1.0) as answer:
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"run-cluster: {url} not ready after {bound:.0f}s")


def _cli(*args: str, base: str, master: str) -> str:
    return subprocess.run([str(VENV / "xrouter"), *args, "--url", base, "--key", master],
                          check=True, capture_output=True, text=True, timeout=60).stdout


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _banner(state: dict[str, Any]) -> str:
    pg = state["postgres"]
    as_pg = "runuser -u postgres -- " if os.geteuid() == 0 else ""
    routers = ", ".join(f"{r['listen']} (pid {r['pid']})" for r in state["routers"])
    masters = ", ".join(f"{port} (pid {pid})" for port, pid in state["redis"]["masters"].items())
    a_master = next(iter(state["redis"]["masters"].values()))
    return f"""
  XRouter is up (cluster mode: Redis Cluster 3+3, PostgreSQL primary + synchronous standby,
  {ROUTERS} routers, 1 gateway; demo model).

  Base URL   : {state['base_url']}/v1
  API key    : {state['demo_key']}   (account "demo", 1000 RUB of credits)
  Master key : {state['master_key']}
  Routers    : {routers}
  Redis      : masters {masters}; every node: {state['redis']['ports']}
  PostgreSQL : primary 127.0.0.1:{pg['ports'][0]} ({pg['data'][0]}),
               standby 127.0.0.1:{pg['ports'][1]} ({pg['data'][1]})
  Logs       : {state['logs']}
  State      : {state['state_file']}

  Chaos drill (docs/operations.md, "Chaos drill"):
    kill -9 {state['routers'][0]['pid']}    # a router
    kill -9 {a_master}    # a Redis master
    {as_pg}{pg['pg_ctl']} -D {pg['data'][0]} stop -m immediate   # the PostgreSQL primary
    {as_pg}{pg['pg_ctl']} -D {pg['data'][1]} promote             # then promote the standby

  Press Ctrl-C to stop everything.
"""


def main() -> int:
    signal.signal(signal.SIGTERM, _on_term)
    # Ctrl-C stops everything even when this was started with SIGINT ignored (a background job
    # of a non-interactive shell inherits that, and Python then installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    home = Path(os.environ.get("XROUTER_CLUSTER_DIR", ROOT / ".xrouter-cluster"))
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    state_file = home / "cluster.json"
    state_file.unlink(missing_ok=True)
    master = os.environ.get("XROUTER_MASTER_KEY") or f"xr-dev-{secrets.token_hex(16)}"
    gw_port = int(os.environ.get("XROUTER_GATEWAY_PORT", "8000"))
    procs: list[subprocess.Popen[bytes]] = []
    redis = postgres = None
    try:
        print("run-cluster: starting Redis Cluster (3+3) and PostgreSQL (primary + standby)...",
              flush=True)
        redis = RedisCluster().start()
        postgres = DurablePostgresHA().start()
        from xrouter_router.storage.sql.migrate import migrate
        asyncio.run(migrate(postgres.multi_host(), wait=10))
        ports = free_ports(2 * ROUTERS)
        base_env = {**os.environ, "XROUTER_DATABASE_URL": postgres.multi_host(),
                    "XROUTER_REDIS_URL": redis.url, "XROUTER_MASTER_KEY": master,
                    "XROUTER_KEY_SECRET": secrets.token_hex(32)}
        logs: dict[subprocess.Popen[bytes], Path] = {}  # each service's log, for _wait_ready
        routers = _spawn_routers(base_env, home, ports, procs, logs)
        target = ",".join(r["listen"] for r in routers)
        procs.insert(0, _spawn("xrouter_gateway", {**base_env, "XROUTER_GATEWAY_PORT": str(gw_port),
                                                   "XROUTER_ROUTER_TARGET": target},
                               home / "gateway.log", logs))
        base = f"http://127.0.0.1:{gw_port}"
        _wait_ready(f"{base}/readyz", logs)
        _cli("credits", "add", "demo", "1000", "--reference", "make run-cluster: demo credits",
             base=base, master=master)
        created = json.loads(_cli("keys", "create", "--account", "demo", "--tier", "pro",
                                  "--name", "demo key", base=base, master=master))
        masters = {port: redis.pids()[port] for port in redis.master_ports()}
        state = {
            "base_url": base, "demo_key": created["key"], "master_key": master,
            "database_url": postgres.multi_host(),
            "gateway": {"port": gw_port, "pid": procs[0].pid}, "routers": routers,
            "redis": {"ports": redis.ports, "masters": masters, "nodes": redis.pids()},
            "postgres": {"ports": postgres.ports, "pg_ctl": str(bindir() / "pg_ctl"),
                         "data": [str(postgres.data_dir(n)) for n in (0, 1)]},
            "logs": str(home), "state_file": str(state_file),
            # Every process this started, for the drill and for checking that Ctrl-C stops all.
            "pids": [p.pid for p in procs] + [*redis.pids().values()]
            + [*postgres.pids().values()]}
        partial = state_file.with_suffix(".partial")
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            json.dump(state, out, indent=2)
        partial.replace(state_file)  # whole or absent for whoever reads it
        print(_banner(state), flush=True)
        while all(p.poll() is None for p in procs[:1]):  # the gateway; routers may be killed
            time.sleep(0.5)
        print("run-cluster: the gateway exited; see its log", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped):
        print("\nrun-cluster: stopping...", flush=True)
        return 0
    finally:
        _stop(procs)
        if postgres is not None:
            postgres.stop()
        if redis is not None:
            redis.stop()
        state_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
