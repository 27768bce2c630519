"""deploy/systemd units and deploy/env examples: systemd's own verifier and security rating, the
settings that must agree with the services, and the env files read by the real settings code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.nginx_site import seconds as nginx_seconds
from tests.deploy.nginx_site import site_directive
from tests.deploy.unit_files import (
    UNITS,
    command,
    env_example,
    load,
    render_for_verify,
    seconds,
    value,
    values,
    words,
)
from tests.support import ROOT
from xrouter_gateway.settings import GatewaySettings
from xrouter_router.settings import RouterSettings

SERVICES = [name for name in UNITS if name.endswith(".service")]
APP_SERVICES = ["xrouter-gateway.service", "xrouter-migrate.service", "xrouter-router.service"]
SANDBOX = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
           "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": ""}
# uvicorn's graceful shutdown in xrouter_gateway.__main__ (timeout_graceful_shutdown).
GATEWAY_DRAIN_SECONDS = 30.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze is not installed (Debian: systemd)")


def test_the_expected_units_exist() -> None:
    assert UNITS == ["xrouter-backup.service", "xrouter-backup.timer", "xrouter-gateway.service",
                     "xrouter-migrate.service", "xrouter-router.service"]


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    rendered = render_for_verify(tmp_path)
    done = subprocess.run([str(ANALYZE), "verify", *map(str, rendered)], capture_output=True,
                          text=True, timeout=60, check=False)
    # verify exits 0 on unknown keys and unparsable values, only warning: both must be empty.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_analyze
@pytest.mark.parametrize("name", SERVICES)
def test_security_exposure_is_low(tmp_path: Path, name: str) -> None:
    rendered = {p.name: p for p in render_for_verify(tmp_path)}
    done = subprocess.run([str(ANALYZE), "security", "--offline=true", "--no-pager", str(rendered[name])],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_units_run_as_xrouter_in_a_sandbox(name: str) -> None:
    unit = load(name)
    assert value(unit, "Service", "User") == "xrouter"
    assert value(unit, "Service", "Group") == "xrouter"
    for key, expected in SANDBOX.items():
        assert value(unit, "Service", key) == expected, key
    assert value(unit, "Service", "ExecStart").startswith("/opt/xrouter/venv/bin/")


def test_router_unit() -> None:
    unit = load("xrouter-router.service")
    assert value(unit, "Service", "ExecStart") == "/opt/xrouter/venv/bin/xrouter-router"
    assert value(unit, "Service", "EnvironmentFile") == "/etc/xrouter/router.env"
    assert value(unit, "Service", "StateDirectory") == "xrouter"
    assert "XROUTER_DATA_DIR=/var/lib/xrouter" in words(unit, "Service", "Environment")
    assert value(unit, "Service", "Restart") == "on-failure"
    assert value(unit, "Service", "KillSignal") == "SIGTERM"
    assert {"xrouter-migrate.service", "postgresql.service"} <= words(unit, "Unit", "After")
    assert words(unit, "Unit", "Requires") == {"xrouter-migrate.service"}
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]


def test_gateway_unit() -> None:
    unit = load("xrouter-gateway.service")
    assert value(unit, "Service", "ExecStart") == "/opt/xrouter/venv/bin/xrouter-gateway"
    assert value(unit, "Service", "EnvironmentFile") == "/etc/xrouter/gateway.env"
    assert value(unit, "Service", "Restart") == "on-failure"
    assert value(unit, "Service", "KillSignal") == "SIGTERM"
    assert "xrouter-router.service" in words(unit, "Unit", "After")
    assert "xrouter-router.service" in words(unit, "Unit", "Wants")


def test_stop_timeouts_outlast_the_drains() -> None:
    router_env, _ = env_example("router")
    grace = RouterSettings.from_env(router_env).shutdown_grace
    assert grace == RouterSettings.from_env({"XROUTER_MASTER_KEY": "k"}).shutdown_grace == 30.0
    assert seconds(value(load("xrouter-router.service"), "Service", "TimeoutStopSec")) >= grace + 10
    assert seconds(value(load("xrouter-gateway.service"), "Service", "TimeoutStopSec")) >= (
        GATEWAY_DRAIN_SECONDS + 10)


def test_migration_runs_only_with_a_database(tmp_path: Path) -> None:
    unit = load("xrouter-migrate.service")
    assert value(unit, "Service", "Type") == "oneshot"
    assert command(value(unit, "Service", "ExecStart")) == [
        "/opt/xrouter/venv/bin/xrouter", "migrate", "--wait", "60"]
    condition = command(value(unit, "Service", "ExecCondition"))
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    ran = {label: subprocess.run(condition, env={**base, **extra}, check=False, timeout=10).returncode
           for label, extra in {"unset": {}, "empty": {"XROUTER_DATABASE_URL": ""},
                                "set": {"XROUTER_DATABASE_URL": "postgresql:///xrouter"}}.items()}
    # 1..254 = skipped (not failed, so the router still starts); 0 = run the migration.
    assert ran == {"unset": 1, "empty": 1, "set": 0}


def test_backup_timer_and_service() -> None:
    timer = load("xrouter-backup.timer")
    assert value(timer, "Timer", "OnCalendar") == "*-*-* 03:15:00"
    assert value(timer, "Timer", "Persistent") == "true"
    service = load("xrouter-backup.service")
    assert value(service, "Service", "Type") == "oneshot"
    assert value(service, "Service", "User") == "postgres"
    assert value(service, "Service", "ExecStart") == "/usr/local/sbin/xrouter-backup"
    backup_env, _ = env_example("backup")
    assert f"BACKUP_DIR={backup_env['BACKUP_DIR']}" in words(service, "Service", "Environment")
    assert backup_env["BACKUP_DIR"].startswith(value(service, "Service", "ReadWritePaths") + "/")


# ---- env examples ---------------------------------------------------------------------------------

def documented_variables() -> set[str]:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", text, re.MULTILINE))


def catalog_key_variables() -> set[str]:
    text = (ROOT / "config" / "catalog.example.toml").read_text(encoding="utf-8")
    return set(re.findall(r'^api_key_env = "([A-Z0-9_]+)"', text, re.MULTILINE))


@pytest.mark.parametrize("name", ["gateway", "router"])
def test_env_examples_name_only_real_variables(name: str) -> None:
    set_values, commented = env_example(name)
    unknown = (set(set_values) | commented) - documented_variables() - catalog_key_variables()
    assert unknown == set()


def test_gateway_env_example_is_valid_and_matches_nginx() -> None:
    env, _ = env_example("gateway")
    settings = GatewaySettings.from_env(env)
    assert site_directive("server") == [f"{settings.host}:{settings.port}"]  # nginx's upstream
    assert settings.max_body_bytes == 10 * 1024 * 1024  # nginx's client_max_body_size 10m
    assert settings.request_timeout < nginx_seconds(site_directive("proxy_read_timeout")[0])
    # nginx names the client in X-Forwarded-For, and the gateway trusts it from nginx alone.
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in site_directive("proxy_set_header")
    assert settings.trusted_proxies == ("127.0.0.1",)
    router_env, _ = env_example("router")
    assert settings.router_target == RouterSettings.from_env(router_env).listen


def test_router_env_example_is_valid() -> None:
    env, _ = env_example("router")
    settings = RouterSettings.from_env(env)
    assert settings.data_dir == Path("/var/lib/xrouter")
    assert settings.database_url.startswith("postgresql://")
    assert settings.redis_url == ""  # one replica: in-process limits
    assert settings.metrics_port == 9100
