"""Helpers for the install tests: the repository, a cache reused across runs, the Dockerfile read as data."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Read at import: the autouse fixture in conftest.py clears INTERLACE_* variables before each test runs.
CACHE_ROOT = Path(os.environ.get("INTERLACE_TEST_CACHE") or REPO / ".ci" / "cache")


def cache_dir(name: str) -> Path:
    """A directory kept across test runs: ``$INTERLACE_TEST_CACHE/<name>`` or ``<repo>/.ci/cache/<name>``."""
    path = CACHE_ROOT / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def host_env(**extra: str) -> dict[str, str]:
    """This process's environment (pip's index settings, certificates, PATH) without any INTERLACE_* variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLACE_")}
    env.update(extra)
    return env


def run(cmd: list[str] | str, *, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run(  # type: ignore[call-overload]
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )
    if proc.returncode != 0:
        pytest.fail(f"{cmd!r} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    #: The raw arguments (continuations joined).
    args: str

    @property
    def exec_form(self) -> list[str] | None:
        """``["a", "b"]`` (JSON form) as a list, else None."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(item, str) for item in value)
        return value

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """``--flag=value`` options in front of the arguments (COPY --from, HEALTHCHECK --interval) and the rest."""
        flags: dict[str, str] = {}
        rest = self.args.strip()
        while rest.startswith("--"):
            word, _, rest = rest.partition(" ")
            name, _, value = word[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        return flags, rest


def read_dockerfile(path: Path) -> list[Instruction]:
    """The instructions, with their stage number (0 = first FROM); comments dropped, continuations joined."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def env_pairs(instruction: Instruction) -> dict[str, str]:
    """``ENV A=1 B=2`` -> {"A": "1", "B": "2"}."""
    pairs = {}
    for token in shlex.split(instruction.args):
        name, sep, value = token.partition("=")
        assert sep, f"ENV in the legacy 'ENV name value' form: {instruction.args}"
        pairs[name] = value
    return pairs
