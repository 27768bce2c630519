"""Certificate files mounted into a container (a Kubernetes Secret, files on a host), read
together and watched for replacement, so a rotated certificate is used without a restart.

Nothing here runs per request: the router's gRPC server asks for a changed set once per new
connection (one stat() per file), the gateway checks every few seconds in the background."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from xrouter_common.env import ConfigError

Stamp = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class PemSet:
    """The contents of one read of the files (PEM bytes; b"" for a file not configured)."""

    cert: bytes
    key: bytes
    ca: bytes


@dataclass(frozen=True, slots=True)
class CertFiles:
    """A certificate chain, its private key and the CA bundle that verifies the peer. A path
    that is None is not configured (a gateway without a client certificate, say)."""

    cert: Path | None
    key: Path | None
    ca: Path | None

    def paths(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert, self.key, self.ca) if p is not None)

    def stamp(self) -> Stamp:
        """What changes when any file is replaced (modification time, size, inode): Kubernetes
        swaps a Secret's files by a symlink, which stat() follows."""
        out = []
        for path in self.paths():
            info = os.stat(path)
            out.append((info.st_mtime_ns, info.st_size, info.st_ino))
        return tuple(out)

    def read(self) -> PemSet:
        def load(path: Path | None) -> bytes:
            return path.read_bytes() if path is not None else b""
        return PemSet(load(self.cert), load(self.key), load(self.ca))


class Watched:
    """The files' current contents and whether they changed since the last look. `changed()`
    costs one stat() per file; a read that fails (a file being replaced) keeps the old set."""

    def __init__(self, files: CertFiles) -> None:
        self.files = files
        self._stamp = files.stamp()
        self.current = files.read()

    def changed(self) -> PemSet | None:
        """The new contents when a file changed since the last call, else None."""
        try:
            stamp = self.files.stamp()
            if stamp == self._stamp:
                return None
            pems = self.files.read()
        except OSError:
            return None  # mid-swap: look again next time
        self._stamp, self.current = stamp, pems
        return pems

    def forget(self) -> None:
        """Make the next `changed()` report the files again (a swap that could not be applied)."""
        self._stamp = ()


def optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def require_files(name: str, files: CertFiles) -> None:
    """Fail at startup, naming the setting, when a configured file cannot be read."""
    for path in files.paths():
        if not path.is_file():
            raise ConfigError(f"{name}: {path} is not a readable file")


def is_loopback(listen: str) -> bool:
    """Whether a `host:port` listen address accepts connections from this host only."""
    host = listen.rpartition(":")[0].strip("[]") if ":" in listen else listen
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or "" (every interface)
