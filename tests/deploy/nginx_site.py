"""Runs deploy/nginx/api.xrouter.ru.conf for real: the site file with its ports, upstream,
certificate and log paths substituted, inside a minimal main config in a temporary prefix."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT, free_port

SITE = ROOT / "deploy" / "nginx" / "api.xrouter.ru.conf"
NGINX = Path("/usr/sbin/nginx")
PRODUCTION_UPSTREAM = "server 127.0.0.1:8000;"
CERT_DIR = "/etc/letsencrypt/live/api.xrouter.ru/"
ACME_ROOT = "root /var/www/html;"
LOG_DIR = "/var/log/nginx/"

MAIN_CONF = """\
{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/log/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix}/log/access.log;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {prefix}/site.conf;
}}
"""


def site_directive(name: str) -> list[str]:
    """Every value of a directive in the site file (one directive per line there)."""
    text = SITE.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(rf"^\s*{re.escape(name)}\s+(.+?);\s*$", text, re.MULTILINE)]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    assert match, value
    scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0}[match.group(2)]
    return int(match.group(1)) * scale


class SiteChanged(AssertionError):
    """A line the renderer substitutes is missing from the site file: update both together."""


def substitute(text: str, old: str, new: str) -> str:
    """Replace every occurrence of `old`, which must occur at least once."""
    if old not in text:
        raise SiteChanged(f"{SITE.name} no longer contains {old!r}")
    return text.replace(old, new)


def render_site(text: str, *, http_port: int, https_port: int, gateway_port: int,
                prefix: Path) -> str:
    """The production site with everything host-specific moved to loopback ports and `prefix`."""
    for old, new in (
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("listen [::]:443 ssl http2;", ""),
        (PRODUCTION_UPSTREAM, f"server 127.0.0.1:{gateway_port};"),
        (CERT_DIR, f"{prefix}/tls/"),
        (ACME_ROOT, f"root {prefix}/www;"),
        (LOG_DIR, f"{prefix}/log/"),
    ):
        text = substitute(text, old, new)
    return text


def _worker_user() -> str:
    """As root, workers run as nobody (as in production they run as www-data)."""
    if os.geteuid() != 0:
        return ""
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"


def self_signed_cert(directory: Path) -> Path:
    """fullchain.pem + privkey.pem for api.xrouter.ru and 127.0.0.1; returns the certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=api.xrouter.ru",
         "-addext", "subjectAltName=DNS:api.xrouter.ru,IP:127.0.0.1",
         "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem")],
        check=True, capture_output=True, timeout=30)
    return directory / "fullchain.pem"


@dataclass
class Nginx:
    prefix: Path
    http_port: int
    https_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def argv(self, *extra: str) -> list[str]:
        return [str(NGINX), "-p", str(self.prefix), "-c", str(self.conf),
                "-e", str(self.prefix / "log" / "startup.log"), *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the rendered configuration."""
        return subprocess.run(self.argv("-t"), capture_output=True, text=True, timeout=30, check=False)

    def start(self, timeout: float = 10.0) -> Nginx:
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not (self.prefix / "nginx.pid").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {self.error_log()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def error_log(self) -> str:
        logs = [self.prefix / "log" / name for name in ("startup.log", "error.log")]
        return "\n".join(p.read_text(errors="replace") for p in logs if p.exists())


def prepare(gateway_port: int) -> Nginx:
    """A prefix directory holding the rendered site, a main config, a certificate and the ACME
    webroot. World-traversable, because the workers run as nobody when the tests run as root."""
    prefix = Path(tempfile.mkdtemp(prefix="xr-nginx-"))
    server = Nginx(prefix, free_port(), free_port())
    try:
        prefix.chmod(0o755)
        (prefix / "log").mkdir()
        (prefix / "temp").mkdir()
        for directory in ("www", "www/.well-known", "www/.well-known/acme-challenge"):
            (prefix / directory).mkdir(mode=0o755)
            (prefix / directory).chmod(0o755)  # whatever the umask
        self_signed_cert(prefix / "tls")
        site = render_site(SITE.read_text(encoding="utf-8"), http_port=server.http_port,
                           https_port=server.https_port, gateway_port=gateway_port, prefix=prefix)
        (prefix / "site.conf").write_text(site, encoding="utf-8")
        server.conf.write_text(MAIN_CONF.format(user=_worker_user(), prefix=prefix), encoding="utf-8")
    except BaseException:
        server.stop()
        raise
    return server
