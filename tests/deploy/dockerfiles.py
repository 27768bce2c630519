"""Static reading of docker/*.Dockerfile and .dockerignore for the deploy tests: instructions by
stage, and Docker's own rules for which paths enter the build context."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT

DOCKER_DIR = ROOT / "docker"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and blank lines dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def stages(path: Path) -> list[Stage]:
    result: list[Stage] = []
    for inst in instructions(path.read_text(encoding="utf-8")):
        if inst.keyword == "FROM":
            words = inst.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            result.append(Stage(words[0], name))
        elif result:
            result[-1].instructions.append(inst)
    return result


def external_base(all_stages: list[Stage], stage: Stage) -> str:
    """The registry image a stage finally builds on, following `FROM <earlier stage>`."""
    names = {s.name: s for s in all_stages if s.name}
    while stage.base in names:
        stage = names[stage.base]
    return stage.base


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form ENTRYPOINT/CMD, or None for the shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def copy_sources(args: str) -> list[str]:
    """The context paths a COPY reads (none for COPY --from=<stage>)."""
    words = shlex.split(args)
    if any(w.startswith("--from=") for w in words):
        return []
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]


# ---- .dockerignore: moby/patternmatcher semantics ---------------------------------------------

@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    exclusion: bool  # a `!` line: put back what earlier lines excluded


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif char == "*":
            out, i = out + "[^/]*", i + 1
        elif char == "?":
            out, i = out + "[^/]", i + 1
        elif char == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(char), i + 1
    return re.compile(f"^{out}$")


def ignore_patterns(text: str) -> list[Pattern]:
    patterns: list[Pattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        cleaned = line.removeprefix("!").strip().strip("/")
        patterns.append(Pattern(_regex(cleaned), exclusion))
    return patterns


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """Whether Docker leaves `path` (relative, `/`-separated) out of the build context: the last
    matching line wins, and a line matching a parent directory matches everything below it."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        if any(pattern.regex.match(c) for c in candidates):
            matched = not pattern.exclusion
    return matched
