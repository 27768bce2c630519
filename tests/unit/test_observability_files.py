"""The shipped observability files: the Prometheus configuration and rules pass promtool (config
check, rule check, rule unit tests), and every Grafana dashboard is well formed, reads from the
`datasource` variable, and queries only metrics XRouter exports, in PromQL that parses.

The helpers that read dashboards and derive test copies of prometheus.yml are shared with
tests/integration/test_prometheus_live.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from xrouter_common.memory_limit import MemoryLimitCollector
from xrouter_gateway.metrics import GatewayMetrics
from xrouter_router import accounting_metrics
from xrouter_router.storage.timing import Latency
from xrouter_router.telemetry import RouterMetrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "observability" / "prometheus"
DASHBOARD_DIR = ROOT / "observability" / "grafana" / "dashboards"
OPERATIONS = ROOT / "docs" / "operations.md"
TITLES = {
    "request-rate-latency.json": "Request Rate and Latency",
    "error-rate-by-provider.json": "Error Rate by Provider",
    "token-usage.json": "Token Usage",
    "resource-utilization.json": "Resource Utilization",
    "routing-and-failover.json": "Routing and Failover",
    "credits-and-limits.json": "Credits and Limits",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's built-in variables, as a test substitutes them: a range window, a dashboard range.
BUILTINS = {"__rate_interval": "1m", "__range": "1h"}
# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds"})
RUNBOOK = "https://xrouter.example/docs/operations.md#"
# The block of prometheus.yml that a Prometheus without Kubernetes discovery (Debian's build)
# cannot parse; test copies put static targets in its place.
K8S_DISCOVERY = "    kubernetes_sd_configs:\n      - role: pod\n"


# ---- shared helpers ----------------------------------------------------------------------------

def find_tool(name: str) -> str:
    """The path of a Prometheus binary. Missing: a skip on a developer's machine, a failure in
    CI (CI set), where scripts/test.sh installs the Debian package."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed: apt-get install prometheus (scripts/apt-install.sh)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must have it")
    pytest.skip(f"{message}; skipped outside CI")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str

    def label(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref}]"


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8")) for name in TITLES}


def variable_values(dashboard: dict[str, Any], builtins: dict[str, str]) -> dict[str, str]:
    """What each variable stands for in a query, given its default (`All` -> its allValue)."""
    values = dict(builtins)
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        current = var["current"]["value"]
        if current in (["$__all"], "$__all"):
            values[var["name"]] = var["allValue"]
        else:
            values[var["name"]] = current
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's `$name` and `${name}` interpolation; `$1` (a label_replace group) stays."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)", replace, expr)


def dashboard_queries(builtins: dict[str, str]) -> Iterator[Query]:
    """Every target expression of every panel, variables substituted."""
    for name, dashboard in load_dashboards().items():
        values = variable_values(dashboard, builtins)
        for panel in dashboard["panels"]:
            for tgt in panel["targets"]:
                yield Query(name, panel["title"], tgt["refId"], substitute(tgt["expr"], values))


def variable_queries(builtins: dict[str, str]) -> Iterator[tuple[str, str, str, str]]:
    """(dashboard, variable, series selector, label) of each `label_values(selector, label)`."""
    for name, dashboard in load_dashboards().items():
        values = variable_values(dashboard, builtins)
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
                assert match, f"{name}: ${var['name']} is not a label_values() query"
                yield name, var["name"], substitute(match.group(1), values), match.group(2)


def scrape_config_copy(static_configs: list[dict[str, Any]], rule_file: Path,
                       interval: str | None = None) -> str:
    """prometheus.yml with static targets instead of Kubernetes discovery, everything else
    (relabelling included) as shipped. Static targets may carry the `__meta_kubernetes_*`
    labels discovery would set, so the relabelling is exercised for real."""
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8")
    replacements = [(K8S_DISCOVERY, f"    static_configs: {json.dumps(static_configs)}\n"),
                    ("\n  - alerts.yml\n", f"\n  - {json.dumps(str(rule_file))}\n")]
    if interval is not None:
        replacements += [(f"  {key}: {old}\n", f"  {key}: {interval}\n")
                         for key, old in (("scrape_interval", "15s"), ("scrape_timeout", "10s"),
                                          ("evaluation_interval", "15s"))]
    for old, new in replacements:
        assert text.count(old) == 1, f"prometheus.yml no longer contains {old!r} exactly once"
        text = text.replace(old, new)
    return text


def alert_names() -> list[str]:
    return re.findall(r"^\s+- alert: (\w+)$", (PROMETHEUS_DIR / "alerts.yml").read_text(), re.M)


def rule_expressions() -> list[str]:
    """The `expr` of every rule in alerts.yml (one line, or a `|` block)."""
    exprs: list[str] = []
    lines = (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        match = re.fullmatch(r"(\s+)expr: (.*)", line)
        if not match:
            continue
        if match.group(2) != "|":
            exprs.append(match.group(2))
            continue
        indent, block = len(match.group(1)), []
        for following in lines[i + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        exprs.append(" ".join(block).strip())
    return exprs


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# ---- promtool ----------------------------------------------------------------------------------

def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_scrape_config_passes_promtool(tmp_path: Path) -> None:
    promtool = find_tool("promtool")
    shipped = PROMETHEUS_DIR / "prometheus.yml"
    result = run(promtool, "check", "config", str(shipped))
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian builds Prometheus without Kubernetes discovery: check the rest of the file.
        copy = tmp_path / "prometheus.yml"
        copy.write_text(scrape_config_copy([{"targets": ["127.0.0.1:9100"]}],
                                           PROMETHEUS_DIR / "alerts.yml"), encoding="utf-8")
        result = run(promtool, "check", "config", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_rules_pass_promtool() -> None:
    result = run(find_tool("promtool"), "check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run(find_tool("promtool"), "test", "rules", str(PROMETHEUS_DIR / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool has no PromQL parser of its own: each expression becomes a recording rule."""
    promtool = find_tool("promtool")
    rules = [{"record": f"dashboard:{q.dashboard.removesuffix('.json').replace('-', '_')}:"
                        f"{i}_{q.ref}", "expr": q.expr}
             for i, q in enumerate(dashboard_queries(BUILTINS))]
    rules += [{"record": f"variable:{name.removesuffix('.json').replace('-', '_')}:{var}",
               "expr": selector}
              for name, var, selector, _ in variable_queries(BUILTINS)]
    path = tmp_path / "dashboard-queries.yml"
    # JSON is YAML.
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}, indent=1))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# ---- alerts ------------------------------------------------------------------------------------

def test_every_alert_has_severity_annotations_and_a_runbook() -> None:
    text = (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8")
    headings = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    chunks = re.split(r"^\s+- (?=alert: |record: )", text, flags=re.M)[1:]
    alerts = [c for c in chunks if c.startswith("alert: ")]
    assert len(alerts) == len(alert_names()) >= 9
    for chunk in alerts:
        name = chunk.split()[1]
        assert re.search(r"^\s+severity: (critical|warning)$", chunk, re.M), name
        for key in ("summary", "description"):
            assert re.search(rf"^\s+{key}: \S", chunk, re.M), f"{name} has no {key}"
        anchor = name.lower()
        assert f'runbook_url: "{RUNBOOK}{anchor}"' in chunk, name
        assert anchor in headings, f"docs/operations.md has no section for {name}"



def test_the_alert_table_lists_every_alert_once() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    table = re.findall(r"^\| `(XRouter\w+)` \| (critical|warning) \|", text, re.M)
    assert [name for name, _ in table] == alert_names()
    rules = (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8")
    for name, severity in table:
        chunk = rules.split(f"- alert: {name}\n", 1)[1].split("- alert:", 1)[0]
        assert f"severity: {severity}" in chunk, name

def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    text = (PROMETHEUS_DIR / "alerts.test.yml").read_text(encoding="utf-8")
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", text)
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    names = set(alert_names())
    assert names - firing == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a non-firing test"
    assert {name for name, _ in cases} <= names, "tests of alerts that do not exist"


# ---- dashboards --------------------------------------------------------------------------------

@dataclass
class _Redis:
    """A Redis-backed component as the accounting collector reads it (errors, degraded answers,
    call latency, lane fallbacks), standing in for the key cache and the ledger consumer too."""

    errors: int = 0
    degraded: int = 0
    lane_fallbacks: int = 0
    hits: int = 0
    misses: int = 0
    sizes: tuple[int, int] = (0, 0)
    last_flush_seconds: float = 0.0
    latency: Latency = field(default_factory=Latency)


@dataclass
class _Database:
    down: bool = False
    errors: int = 0
    latency: Latency = field(default_factory=Latency)


def exported_metric_names() -> frozenset[str]:
    """The series names XRouter's two tiers expose on /metrics."""
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    RouterMetrics(registry)
    accounting = accounting_metrics.register(registry, {"limits": _Redis(), "database": _Database()})
    accounting.backlog = 0
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
                "histogram": ("_bucket", "_count", "_sum", "_created")}
    with tempfile.TemporaryDirectory() as cgroup:  # a container with a memory limit
        Path(cgroup, "memory.max").write_text("1073741824\n", encoding="ascii")
        registry.register(MemoryLimitCollector(Path(cgroup)))
        families = list(registry.collect())
    return frozenset(family.name + suffix for family in families
                     for suffix in suffixes[family.type])


def referenced_metrics(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, `__name__=~` patterns) an expression reads."""
    patterns = set(re.findall(r'__name__=~"([^"]+)"', expr))
    rest = re.sub(r'__name__=~"[^"]+"', "", expr)
    names = set(re.findall(r"\b((?:xrouter|process|python)_\w+)", rest))
    names |= {n for n in PROMETHEUS_SERIES if re.search(rf"\b{n}\s*[{{\[(]", rest)}
    return names, patterns


def assert_known_metrics(where: str, expr: str, known: frozenset[str]) -> None:
    names, patterns = referenced_metrics(expr)
    assert names <= known, f"{where}: unknown metrics {sorted(names - known)}"
    for pattern in patterns:
        assert any(re.fullmatch(pattern, n) for n in known), f"{where}: {pattern} matches nothing"


def test_dashboards_have_the_origin_titles_and_one_datasource_variable() -> None:
    dashboards = load_dashboards()
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == sorted(TITLES)
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    for name, dashboard in dashboards.items():
        assert dashboard["title"] == TITLES[name]
        assert dashboard["schemaVersion"] == 39
        assert "xrouter" in dashboard["tags"]
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["job"]["current"]["value"] == "xrouter"
        for var in variables.values():
            if var["type"] == "query":
                assert var["datasource"] == DATASOURCE, f"{name}: ${var['name']}"


def test_every_panel_reads_the_datasource_variable_with_units_and_thresholds() -> None:
    for name, dashboard in load_dashboards().items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in dashboard["panels"]:
            where = f"{name} / {panel['title']}"
            assert panel["datasource"] == DATASOURCE, where
            assert panel["targets"], where
            assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), where
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults.get("unit") or panel["type"] in ("table", "state-timeline"), where
            assert defaults["thresholds"]["steps"], where


def test_dashboard_queries_use_grafana_windows_and_exported_metrics() -> None:
    known = exported_metric_names() | PROMETHEUS_SERIES
    for name, dashboard in load_dashboards().items():
        for panel in dashboard["panels"]:
            for tgt in panel["targets"]:
                where, expr = f"{name} / {panel['title']}", tgt["expr"]
                windows = set(re.findall(r"(?<=[}\w])\[([^\]]+)\]", expr))
                assert windows <= {"$__rate_interval", "$__range"}, f"{where}: {windows}"
                if "_bucket" in expr and "le=" not in expr:
                    assert "histogram_quantile(" in expr, where
                assert_known_metrics(where, expr, known)


def test_alerts_use_exported_metrics() -> None:
    known = exported_metric_names() | PROMETHEUS_SERIES
    exprs = rule_expressions()
    assert len(exprs) == len(alert_names()) + 4  # and the four SLO recording rules
    for expr in exprs:
        assert_known_metrics("alerts.yml", expr, known)


def test_latency_quantiles_cover_p50_p95_p99() -> None:
    exprs = [q.expr for q in dashboard_queries(BUILTINS)
             if q.dashboard == "request-rate-latency.json"]
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({quantile}, " in e for e in exprs), quantile
