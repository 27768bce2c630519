"""docker/*.Dockerfile and .dockerignore, checked without a Docker engine: hadolint, the runtime
stage's properties, the build context, what each image installs, and its health checks run
against real services."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy.dockerfiles import (
    DOCKER_DIR,
    DOCKERIGNORE,
    Stage,
    copy_sources,
    excluded,
    exec_form,
    external_base,
    ignore_patterns,
    stages,
)
from tests.support import ROOT, free_port, gateway_settings, router_settings, running_gateway, running_router
from xrouter_common.env import ConfigError
from xrouter_gateway.settings import GatewaySettings
from xrouter_router.settings import DEFAULT_CATALOG, RouterSettings

HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
IMAGES = {"gateway": "services/gateway", "router": "services/router"}
PINNED = r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}"
FORBIDDEN_IN_GATEWAY = {"psycopg", "psycopg-binary", "psycopg-pool", "redis", "xrouter-router", "aiohttp"}


def dockerfile(image: str) -> Path:
    return DOCKER_DIR / f"{image}.Dockerfile"


def runtime(image: str) -> Stage:
    return stages(dockerfile(image))[-1]


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def context_files() -> list[str]:
    """Files in the repository (tracked, or new and not ignored), relative to the root."""
    done = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=30)
    return [line for line in done.stdout.splitlines() if (ROOT / line).is_file()]


# ---- lint and the runtime stage -----------------------------------------------------------------

@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_passes(image: str) -> None:
    if not HADOLINT.exists():
        pytest.skip("hadolint is not in .venv (make install)")
    done = subprocess.run([str(HADOLINT), "--no-color", str(dockerfile(image))], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("image", IMAGES)
def test_every_stage_builds_on_one_pinned_base(image: str) -> None:
    all_stages = stages(dockerfile(image))
    assert [s.name for s in all_stages] == ["base", "builder", "runtime"]
    bases = {external_base(all_stages, s) for s in all_stages}
    assert len(bases) == 1
    assert re.fullmatch(PINNED, bases.pop())


@pytest.mark.parametrize("image", IMAGES)
def test_runtime_stage_runs_the_service_as_non_root(image: str) -> None:
    stage = runtime(image)
    assert stage.last("USER") == "10001:10001"
    assert exec_form(stage.last("ENTRYPOINT")) == [f"/opt/xrouter/bin/xrouter-{image}"]
    assert stage.all("CMD") == []
    assert stage.last("STOPSIGNAL") == "SIGTERM"
    scripts = tomllib.loads((ROOT / IMAGES[image] / "pyproject.toml").read_text())["project"]["scripts"]
    assert f"xrouter-{image}" in scripts  # the entry point pip installs into /opt/xrouter/bin
    assert {"org.opencontainers.image.title", "org.opencontainers.image.version",
            "org.opencontainers.image.source"} <= {w.partition("=")[0] for a in stage.all("LABEL")
                                                    for w in shlex.split(a)}
    env = env_of(stage)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/xrouter/bin:")


def test_gateway_runtime_defaults() -> None:
    stage = runtime("gateway")
    settings = GatewaySettings.from_env(env_of(stage))
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert stage.all("EXPOSE") == [str(settings.port)]
    assert stage.all("VOLUME") == []


def test_router_runtime_defaults() -> None:
    stage = runtime("router")
    # Every interface: the image refuses plaintext gRPC there unless told (TLS or the escape).
    with pytest.raises(ConfigError, match=r"^XROUTER_ROUTER_LISTEN=\[::\]:50051 is not a loopback"):
        RouterSettings.from_env({**env_of(stage), "XROUTER_MASTER_KEY": "k"})
    settings = RouterSettings.from_env({**env_of(stage), "XROUTER_MASTER_KEY": "k",
                                        "XROUTER_ROUTER_INSECURE": "true"})
    assert settings.listen == "[::]:50051"
    assert settings.metrics_port == 9100
    assert stage.all("EXPOSE") == ["50051 9100"]
    assert settings.data_dir == Path("/var/lib/xrouter")
    assert stage.all("VOLUME") == ['["/var/lib/xrouter"]']
    created = " ".join(stage.all("RUN"))
    assert "--owner=10001 --group=10001 --mode=0700 /var/lib/xrouter" in created


# ---- what the builder installs ------------------------------------------------------------------

@pytest.mark.parametrize("image", IMAGES)
def test_builder_installs_the_image_packages_pinned_and_not_editable(image: str) -> None:
    builder = stages(dockerfile(image))[1]
    assert [copy_sources(a) for a in builder.all("COPY")] == [
        ["constraints.txt"], ["libs/common"], [IMAGES[image]]]
    install = next(r for r in builder.all("RUN") if "./libs/common" in r)
    assert f"-c constraints.txt ./libs/common ./{IMAGES[image]}" in install
    assert "--no-cache-dir" in install
    assert "-e " not in install and "--editable" not in install
    assert "requirements-dev" not in install
    copied = [a for a in runtime(image).all("COPY")]
    assert copied == ["--from=builder /opt/xrouter /opt/xrouter"]


def dependency_closure(distribution: str) -> set[str]:
    """Every distribution `distribution` pulls in, from the installed metadata (.venv)."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
                todo.extend(f"{requirement.name}-{extra}" for extra in requirement.extras
                            if _has_distribution(f"{requirement.name}-{extra}"))
    return seen


def _has_distribution(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_the_gateway_image_pulls_in_no_driver() -> None:
    gateway = dependency_closure("xrouter-gateway")
    assert gateway & FORBIDDEN_IN_GATEWAY == set()
    assert {"xrouter-common", "grpcio", "starlette", "uvicorn"} <= gateway
    # The walk does see the drivers where they are: the router's closure.
    assert {"psycopg", "psycopg-binary", "redis"} <= dependency_closure("xrouter-router")
    guard = next(r for r in stages(dockerfile("gateway"))[1].all("RUN") if "find_spec" in r)
    assert all(f"'{module}'" in guard for module in ("xrouter_router", "psycopg", "redis"))


def test_wheels_carry_every_source_file(tmp_path: Path) -> None:
    """The images install real wheels, not the editable .venv: package data must be declared."""
    sources = {"libs/common": ("src", "gen"), "services/gateway": ("src",), "services/router": ("src",)}
    for project in sources:
        shutil.copytree(ROOT / project, tmp_path / "src" / project,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "wheels"), *(str(tmp_path / "src" / p) for p in sources)],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "SOURCE_DATE_EPOCH": "315532800", "PIP_NO_INPUT": "1"})
    assert done.returncode == 0, done.stderr
    files = context_files()
    for project, roots in sources.items():
        wheel = next((tmp_path / "wheels").glob(f"xrouter_{project.rpartition('/')[2]}-*.whl"))
        names = set(zipfile.ZipFile(wheel).namelist())
        for root in roots:
            prefix = f"{project}/{root}/"
            expected = {f.removeprefix(prefix) for f in files if f.startswith(prefix)}
            assert expected and expected - names == set(), project
    entry_points = zipfile.ZipFile(next((tmp_path / "wheels").glob("xrouter_router-*.whl"))).read(
        "xrouter_router-0.1.0.dist-info/entry_points.txt").decode()
    assert "xrouter-router = " in entry_points and "xrouter = " in entry_points


# ---- the build context --------------------------------------------------------------------------

def test_dockerignore_keeps_out_what_must_stay_out() -> None:
    patterns = ignore_patterns(DOCKERIGNORE.read_text(encoding="utf-8"))
    for path in (".venv/bin/python", ".git/HEAD", "tests/support.py", ".xrouter/master.key",
                 "k8s/kustomization.yaml", "deploy/env/router.env.example", "README.md",
                 "libs/common/src/xrouter_common/__pycache__/env.cpython-311.pyc",
                 "services/router/src/xrouter_router.egg-info/PKG-INFO",
                 "services/gateway/build/lib/xrouter_gateway/app.py"):
        assert excluded(path, patterns), path
    assert not excluded("services/router/src/xrouter_router/data/cl100k_base.tiktoken", patterns)


@pytest.mark.parametrize("image", IMAGES)
def test_every_copy_source_exists_and_is_in_the_context(image: str) -> None:
    patterns = ignore_patterns(DOCKERIGNORE.read_text(encoding="utf-8"))
    files = context_files()
    for stage in stages(dockerfile(image)):
        for source in (s for a in stage.all("COPY") for s in copy_sources(a)):
            assert (ROOT / source).exists(), source
            below = [f for f in files if f == source or f.startswith(source + "/")]
            assert below, source
            assert [f for f in below if excluded(f, patterns)] == [], source


# ---- the HEALTHCHECK commands, run against real services ------------------------------------------

def healthcheck(image: str) -> list[str]:
    args = runtime(image).last("HEALTHCHECK")
    argv = exec_form(args[args.index("CMD ") + 4:])
    assert argv is not None and argv[0] == "/opt/xrouter/bin/python"
    return [sys.executable, *argv[1:]]


async def run(argv: list[str], env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), 20)


async def test_router_healthcheck(tmp_path: Path) -> None:
    settings = router_settings(DEFAULT_CATALOG, data_dir=tmp_path, health_listen="127.0.0.1:0")
    async with running_router(settings) as app:
        serving = await run(healthcheck("router"), {"XROUTER_ROUTER_LISTEN": f"[::]:{app.server.port}"})
        # With mTLS on the main port the check asks the health-only port instead.
        probes = await run(healthcheck("router"), {
            "XROUTER_ROUTER_LISTEN": f"[::]:{free_port()}",
            "XROUTER_ROUTER_HEALTH_LISTEN": f"[::]:{app.server.health_port}"})
    closed = await run(healthcheck("router"), {"XROUTER_ROUTER_LISTEN": f"[::]:{free_port()}"})
    assert (serving, probes, closed) == (0, 0, 1)


async def test_gateway_healthcheck() -> None:
    async with running_gateway(gateway_settings(f"127.0.0.1:{free_port()}")) as base:
        alive = await run(healthcheck("gateway"), {"XROUTER_GATEWAY_PORT": base.rpartition(":")[2]})
    closed = await run(healthcheck("gateway"), {"XROUTER_GATEWAY_PORT": str(free_port())})
    assert (alive, closed) == (0, 1)
