"""Install paths from a clean machine: the Dockerfile's own steps (wheel -> fresh venv -> serve), pipx and uvx.

This machine has no Docker engine, so the Dockerfile is checked as data (non-root user, HEALTHCHECK on
/healthz, the served port is the exposed one) and its RUN and CMD steps are run here with its paths mapped
to a temporary directory: the wheel is built from the project's files, installed (not editable) into a
fresh venv, and the installed console script answers --help, a stdio tools/list through the official
client, and serve --transport http + /healthz (and /metrics: prometheus-client is a declared dependency).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from e2e.install_support import REPO, Instruction, cache_dir, env_pairs, host_env, read_dockerfile, run
from e2e.support import DESIGN_TOOLS, child_env, free_port
from interlace_mcp.config import Settings, load_settings

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
DOCKERFILE = read_dockerfile(REPO / "Dockerfile")
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))


def _stage(n: int) -> list[Instruction]:
    return [i for i in DOCKERFILE if i.stage == n]


def _one(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, (keyword, found)
    return found[0]


RUNTIME = _stage(max(i.stage for i in DOCKERFILE))
RUNTIME_ENV = {k: v for i in RUNTIME if i.keyword == "ENV" for k, v in env_pairs(i).items()}


def _served_command() -> list[str]:
    entrypoint = _one(RUNTIME, "ENTRYPOINT").exec_form
    cmd = _one(RUNTIME, "CMD").exec_form
    assert entrypoint is not None and cmd is not None, "ENTRYPOINT and CMD in exec (JSON) form"
    return entrypoint + cmd


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# ---- the Dockerfile and compose.yaml, as data ----------------------------------------------------------


def test_dockerfile_runs_as_a_non_root_user_it_creates() -> None:
    """USER is a named, non-root account that a RUN useradd creates as a system user with a non-zero uid."""
    user = _one(RUNTIME, "USER").args
    assert user not in ("root", "0") and not user.startswith("0:")
    useradd = next(i.args for i in RUNTIME if i.keyword == "RUN" and "useradd" in i.args)
    words = useradd.split()
    assert words[-1] == user and "--system" in words
    assert int(_flag(words, "--uid")) >= 1000
    assert RUNTIME.index(_one(RUNTIME, "USER")) > max(RUNTIME.index(i) for i in RUNTIME if i.keyword == "RUN")


def test_dockerfile_serves_http_on_the_exposed_port_and_checks_healthz_there() -> None:
    """CMD serves streamable HTTP on 0.0.0.0:<EXPOSE>; HEALTHCHECK GETs /healthz on that port."""
    argv = _served_command()
    assert argv[0] in PYPROJECT["project"]["scripts"]  # the console script the wheel installs
    assert argv[1] == "serve" and _flag(argv, "--transport") == "http" and _flag(argv, "--host") == "0.0.0.0"
    exposed = _one(RUNTIME, "EXPOSE").args.split()
    assert exposed == [_flag(argv, "--port")]
    flags, rest = _one(RUNTIME, "HEALTHCHECK").flags_and_rest()
    assert {"interval", "timeout", "retries"} <= set(flags)
    assert rest.startswith("CMD ")
    assert f"http://127.0.0.1:{exposed[0]}/healthz" in rest


def test_dockerfile_settings_are_valid_and_keep_state_in_the_volume() -> None:
    """The image's INTERLACE_* values pass the startup checks; the state dir is the declared volume."""
    settings = {k: v for k, v in RUNTIME_ENV.items() if k.startswith("INTERLACE_")}
    assert "INTERLACE_ALLOWED_HOSTS" in settings  # required to serve on 0.0.0.0
    loaded = load_settings(**{k.removeprefix("INTERLACE_").lower(): v for k, v in settings.items()})
    assert loaded.allowed_hosts
    volume = _one(RUNTIME, "VOLUME").exec_form
    assert volume == [settings["INTERLACE_STATE_DIR"]]
    base = _one(RUNTIME, "FROM").args.split()[0]
    assert base.startswith("python:") and base.endswith("-slim")


def test_dockerfile_copies_only_files_the_build_context_keeps() -> None:
    """What COPY takes from the context exists and is not excluded by .dockerignore."""
    ignored = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")
    }
    for copy in (i for i in DOCKERFILE if i.keyword == "COPY"):
        flags, rest = copy.flags_and_rest()
        if "from" in flags:
            continue
        for source in rest.split()[:-1]:
            assert (REPO / source).exists(), source
            assert source not in ignored and source.rstrip("/") not in ignored, source


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (an unset required variable fails)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in variables and (variables[name] or op != ":-"):
            return variables[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, value)


def test_compose_points_the_server_at_its_postgres_service() -> None:
    """INTERLACE_DATABASE_URL names the postgres service, its user, database and password; no default password."""
    services = COMPOSE["services"]
    postgres, server = services["postgres"], services["interlace-mcp"]
    assert str(postgres["image"]).startswith("postgres:")
    variables = {"POSTGRES_PASSWORD": "s3cretpw"}
    url = urlsplit(_interpolate(server["environment"]["INTERLACE_DATABASE_URL"], variables))
    assert url.scheme == "postgresql" and url.hostname == "postgres" and url.port == 5432
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.path == "/" + postgres["environment"]["POSTGRES_DB"]
    assert url.password == _interpolate(postgres["environment"]["POSTGRES_PASSWORD"], variables) == "s3cretpw"
    with pytest.raises(KeyError):  # compose refuses to start without a password (no built-in default)
        _interpolate(postgres["environment"]["POSTGRES_PASSWORD"], {})
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert load_settings(database_url=url.geturl()).database_url  # a URL our settings accept


def test_compose_publishes_the_served_port_on_loopback_and_keeps_state() -> None:
    """The published container port is the one the image serves; state is a named volume at the state dir."""
    server = COMPOSE["services"]["interlace-mcp"]
    assert server["build"] == "."
    [published] = server["ports"]
    host_ip, _, container_port = str(published).split(":")
    assert host_ip == "127.0.0.1" and container_port == _flag(_served_command(), "--port")
    [volume] = server["volumes"]
    name, target = volume.split(":")
    assert target == RUNTIME_ENV["INTERLACE_STATE_DIR"] and name in COMPOSE["volumes"]
    unknown = [k for k in server["environment"] if k.removeprefix("INTERLACE_").lower() not in Settings.model_fields]
    assert unknown == []


# ---- the Dockerfile's steps, run here ------------------------------------------------------------------


def _map_paths(text: str, mapping: dict[str, Path]) -> str:
    for container, local in sorted(mapping.items(), key=lambda item: -len(item[0])):
        text = text.replace(container, str(local))
    return text


def _run_build_steps(tmp: Path) -> dict[str, Path]:
    """Every COPY and RUN of the Dockerfile, in order, with its absolute paths mapped under ``tmp``.

    ``useradd`` is not run (it would add a user to this machine; its claims are checked above), and pip's
    ``--no-cache-dir`` is dropped (the cache changes nothing that gets installed, only how long it takes).
    """
    mapping = {p: tmp / p.strip("/").replace("/", "_") for p in ("/src", "/wheels", "/opt/interlace-mcp", "/data")}
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    # The image's `python`: this interpreter's base installation (3.11, like the tests), not our dev venv.
    (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    workdir = {0: tmp}
    for step in DOCKERFILE:
        if step.keyword == "WORKDIR":
            workdir[step.stage] = mapping[step.args]
            workdir[step.stage].mkdir(parents=True, exist_ok=True)
        elif step.keyword == "COPY":
            flags, rest = step.flags_and_rest()
            *sources, target = rest.split()
            if "from" in flags:
                continue  # the wheels directory is shared between the stages here
            destination = workdir[step.stage] / target
            for source in sources:  # Docker copies a directory's contents into the target
                if (REPO / source).is_dir():
                    ignore = shutil.ignore_patterns("__pycache__")
                    shutil.copytree(REPO / source, destination, dirs_exist_ok=True, ignore=ignore)
                else:
                    shutil.copy2(REPO / source, destination)
        elif step.keyword == "RUN" and "useradd" not in step.args:
            command = _map_paths(step.args, mapping).replace("--no-cache-dir", "")
            run(
                ["/bin/sh", "-c", command],
                cwd=workdir.get(step.stage, tmp),
                env=host_env(PATH=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"),
                timeout=240,
            )
    return mapping


def _healthcheck(mapping: dict[str, Path], port: int, exposed: str, env: dict[str, str]) -> int:
    _, rest = _one(RUNTIME, "HEALTHCHECK").flags_and_rest()
    argv = Instruction(0, "CMD", rest.removeprefix("CMD ").strip()).exec_form
    assert argv is not None
    argv = [_map_paths(a, mapping).replace(f":{exposed}/", f":{port}/") for a in argv]
    return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_dockerfile_steps_build_the_wheel_install_it_fresh_and_serve(tmp_path: Path) -> None:
    """Build stage -> wheel; runtime stage -> fresh venv (not editable); --help, stdio tools/list, HTTP /healthz."""
    mapping = await anyio.to_thread.run_sync(_run_build_steps, tmp_path)
    venv = mapping["/opt/interlace-mcp"]
    script = venv / "bin" / "interlace-mcp"
    assert script.exists()
    assert not mapping["/wheels"].exists()  # the runtime stage removes the wheels after installing
    where = run([str(venv / "bin" / "python"), "-c", "import interlace_mcp; print(interlace_mcp.__file__)"])
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # installed, not the source tree
    assert not list(venv.glob("lib/python*/site-packages/__editable__*"))

    assert "serve" in run([str(script), "--help"]).stdout

    params = StdioServerParameters(command=str(script), args=[], env=child_env(tmp_path / "stdio"), cwd=tmp_path)
    with (tmp_path / "stdio.err").open("w") as errlog, anyio.fail_after(60):
        async with Client(stdio_client(params, errlog=errlog)) as c:
            assert {t.name for t in (await c.list_tools()).tools} == DESIGN_TOOLS

    # ENTRYPOINT + CMD with the image's environment (paths mapped, the port free on this machine).
    exposed = _one(RUNTIME, "EXPOSE").args
    port, metrics_port = free_port(), free_port()
    env = {k: _map_paths(v, mapping) for k, v in RUNTIME_ENV.items() if k != "PATH"}
    env = {**child_env(mapping["/data"]), **env, "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    env["INTERLACE_METRICS_PORT"] = str(metrics_port)
    argv = [a.replace(exposed, str(port)) if a == exposed else a for a in _served_command()]
    output = tmp_path / "serve.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            with anyio.fail_after(60):
                while _healthcheck(mapping, port, exposed, env) != 0:
                    assert proc.poll() is None, output.read_text(errors="replace")
                    await anyio.sleep(0.2)
            async with httpx.AsyncClient(timeout=10) as http:
                health = (await http.get(f"http://127.0.0.1:{port}/healthz")).json()
                metrics = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert health["status"] == "ok" and health["version"] == PYPROJECT["project"]["version"]
            assert metrics.status_code == 200 and "interlace_mcp_tool_calls_total" in metrics.text
            with pytest.raises(OSError), socket.create_connection(("127.0.0.2", metrics_port), timeout=2):
                pass  # metrics stay on 127.0.0.1 even though the server listens on 0.0.0.0
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert "Traceback" not in output.read_text(errors="replace")


# ---- pipx and uvx, from a git clone (the README's git+ URLs, with this repository as the URL) ------------


@pytest.fixture(scope="module")
def installers() -> Path:
    """A venv with pipx and uv from PyPI, kept in the test cache (installed once)."""
    venv = cache_dir("installers")
    bin_dir = venv / "bin"
    if not ((bin_dir / "pipx").exists() and (bin_dir / "uvx").exists()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        proc = subprocess.run(
            [str(bin_dir / "pip"), "install", "-q", "pipx", "uv"],
            env=host_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            pytest.skip(f"pipx/uv could not be installed from PyPI: {proc.stderr.strip()[-300:]}")
    return bin_dir


def _git_url() -> str:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: the git+ install paths need one")
    return f"git+file://{REPO}"


@pytest.mark.slow
def test_pipx_installs_the_command_from_git(installers: Path, tmp_path: Path) -> None:
    """pipx install git+<repo>: interlace-mcp lands in PIPX_BIN_DIR and runs (its version, a check)."""
    url = _git_url()
    homes = {"PIPX_HOME": "pipx", "PIPX_BIN_DIR": "bin", "PIPX_MAN_DIR": "man"}
    env = host_env(**{name: str(tmp_path / sub) for name, sub in homes.items()})
    run([str(installers / "pipx"), "install", url], env=env, timeout=300)
    script = tmp_path / "bin" / "interlace-mcp"
    version = run([str(script), "--version"]).stdout.strip()
    assert version == f"interlace-mcp {PYPROJECT['project']['version']}"
    checked = run([str(script), "check"], env=child_env(tmp_path / "state"), cwd=tmp_path)
    assert checked.stdout.strip().endswith("ok")


@pytest.mark.slow
def test_uvx_runs_the_command_from_git(installers: Path, tmp_path: Path) -> None:
    """uvx --from git+<repo> interlace-mcp: uv builds and runs it (its cache kept across test runs)."""
    url = _git_url()
    env = host_env(
        UV_CACHE_DIR=str(cache_dir("uv")),
        UV_TOOL_DIR=str(tmp_path / "uv-tools"),
        SSL_CERT_FILE=host_env().get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"),
    )
    proc = run([str(installers / "uvx"), "--from", url, "interlace-mcp", "--version"], env=env, timeout=300)
    assert proc.stdout.strip() == f"interlace-mcp {PYPROJECT['project']['version']}"
