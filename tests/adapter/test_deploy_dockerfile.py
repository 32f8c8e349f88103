"""The root Dockerfile, checked without a Docker engine (none runs here, so the image is never built).

It is parsed with BuildKit's own parser (the `dockerfile` package wraps moby/buildkit's Go parser) and linted
with hadolint. Then what an engine would do is done piece by piece: the build context is computed from
.dockerignore, the package's wheel is built from exactly the files the Dockerfile copies out of that context,
and the entrypoint script is run with stand-ins for the three programs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import dockerfile  # type: ignore[import-not-found]
import pytest

from meshgate.testing.tools import HADOLINT, require

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT_SCRIPT = ROOT / "deploy" / "docker" / "entrypoint.sh"
BASE_IMAGE = "python:3.11-slim"
PORTS = {5680, 5681, 5685}  # diagnostics, API, KDS: deploy/README.md's ports table
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]  # meshgate-global, meshgate-zone, meshgatectl
PACKAGES = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]

Command = tuple[str, ...]


def _commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def _stages() -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for cmd in _commands():
        if cmd.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(cmd)
    return stages


def _final() -> list[dockerfile.Command]:
    return _stages()[-1]


def _only(stage: list[dockerfile.Command], instruction: str) -> dockerfile.Command:
    found = [c for c in stage if c.cmd == instruction]
    assert len(found) == 1, f"expected one {instruction} in the stage, found {len(found)}"
    return found[0]


def _copies(stage: list[dockerfile.Command]) -> Iterator[tuple[list[str], str, tuple[str, ...]]]:
    """(sources, destination, flags) of each COPY that reads the build context (not --from another stage)."""
    for c in stage:
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            *sources, dest = c.value
            yield sources, dest, c.flags


# -- .dockerignore -----------------------------------------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over slash-separated paths."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(text[i], re.escape(text[i]))
            i += 1
    return re.compile(out)


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        rules.append((exception, _pattern(line.lstrip("!").strip("/"))))
    return rules


def _in_context(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its parent directories, decides."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for exception, pattern in rules:
        if any(pattern.fullmatch(c) for c in candidates):
            included = exception
    return included


@pytest.fixture(scope="module")
def context_files() -> set[str]:
    """Every file of the working tree that `docker build .` would send, after .dockerignore."""
    rules = _rules()
    files = set()
    for path in ROOT.rglob("*"):
        if path.is_file():
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith((".git/", ".venv/")) and _in_context(rel, rules):
                files.add(rel)
    return files


# -- the tests ---------------------------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([require(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stage_starts_from_python_3_11_slim() -> None:
    stages = _stages()
    assert len(stages) >= 1
    for stage in stages:
        assert stage[0].value[0] == BASE_IMAGE


def test_nothing_is_fetched_but_the_projects_own_dependencies() -> None:
    for c in _commands():
        assert c.cmd != "ADD", f"line {c.start_line}: ADD can fetch URLs; use COPY"
        if c.cmd == "RUN":
            assert not re.search(r"\b(curl|wget|git)\b", c.value[0]), f"line {c.start_line}: {c.original}"


def test_the_project_is_installed_from_its_own_pyproject() -> None:
    build = _stages()[0]
    workdir = _only(build, "WORKDIR").value[0]
    copied = {src.rstrip("/") for sources, _, _ in _copies(build) for src in sources}
    assert {"pyproject.toml", *PACKAGES} <= copied, "the build stage must copy pyproject.toml and every package"
    installs = [c.value[0] for c in build if c.cmd == "RUN" and "pip install" in c.value[0]]
    assert installs, "no pip install in the build stage"
    for run in installs:
        # Exactly one thing is installed: the directory holding the copied pyproject.toml (with its own extras,
        # `dataplane` for meshgate-dp's Envoy), never a name resolved against the index on its own.
        targets = re.findall(r"pip install((?:\s+-{1,2}[\w-]+)*)\s+(\S+)", run)
        assert [re.sub(r"\[[\w,-]+\]$", "", t.strip("'\"")) for _, t in targets] == [workdir], run
    for script in SCRIPTS:
        assert any(script in c.value[0] for c in build if c.cmd == "RUN"), f"the build does not run {script}"


def test_the_image_installs_the_versions_the_lock_pins() -> None:
    build = _stages()[0]
    copied = {src for sources, _, _ in _copies(build) for src in sources}
    assert "requirements.lock" in copied
    installs = [c.value[0] for c in build if c.cmd == "RUN" and "pip install" in c.value[0]]
    assert all("PIP_CONSTRAINT=" in run and "requirements.lock" in run for run in installs), installs
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!requirements.lock" in ignore, "the lock must enter the build context"


def test_the_runtime_stage_runs_as_a_non_root_user() -> None:
    user = _only(_final(), "USER").value[0]
    name, _, group = user.partition(":")
    assert name not in ("root", "0"), user
    assert group not in ("root", "0"), user
    assert name.isdigit(), "a numeric uid lets Kubernetes' runAsNonRoot check it"
    manifests = (ROOT / "deploy" / "kubernetes").rglob("deployment.yaml")
    uids = {m.group(1) for p in manifests for m in re.finditer(r"runAsUser: (\d+)\s+# the image", p.read_text())}
    assert uids == {name}, "the Kubernetes pods' runAsUser is the image's user"


def test_the_runtime_stage_exposes_the_ports_and_sets_the_entrypoint() -> None:
    final = _final()
    exposed = {int(p.split("/")[0]) for c in final if c.cmd == "EXPOSE" for p in c.value}
    assert exposed == PORTS
    entrypoint = _only(final, "ENTRYPOINT")
    assert entrypoint.json, "exec form, so the program is PID 1 and gets SIGTERM"
    (program,) = entrypoint.value
    installed = {dest for srcs, dest, _ in _copies(final) for src in srcs if src == "deploy/docker/entrypoint.sh"}
    assert installed == {f"/usr/local/bin/{program}"}
    copy_flags = next(flags for srcs, _, flags in _copies(final) if "deploy/docker/entrypoint.sh" in srcs)
    assert "--chmod=0755" in copy_flags
    cmd = _only(final, "CMD")
    assert cmd.json
    assert list(cmd.value) == ["meshgate-global", "run"]
    env = " ".join(c.original for c in final if c.cmd == "ENV")
    assert "/opt/meshgate/bin" in env, "the venv's scripts are on PATH"


def test_copied_sources_are_in_the_build_context(context_files: set[str]) -> None:
    for stage in _stages():
        for sources, _, _ in _copies(stage):
            for src in sources:
                rel = src.rstrip("/")
                assert (ROOT / rel).exists(), f"COPY {src}: no such path"
                if (ROOT / rel).is_dir():
                    assert any(f.startswith(rel + "/") for f in context_files), f"COPY {src}: excluded"
                else:
                    assert rel in context_files, f"COPY {src}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out_of_the_context(context_files: set[str]) -> None:
    for rel in context_files:
        top = rel.split("/")[0]
        assert top not in {"data", "tests", "bench", ".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        assert "__pycache__" not in rel, rel
        assert not rel.endswith(".pyc"), rel
        assert ".egg-info" not in rel, rel


def test_the_wheel_built_from_the_copied_files_holds_the_whole_package(context_files: set[str], tmp_path: Path) -> None:
    """The build stage's COPY lines, replayed from the computed context, then `pip wheel` as its RUN does."""
    src = tmp_path / "src"
    for sources, dest, _ in _copies(_stages()[0]):
        for source in sources:
            rel = source.rstrip("/")
            for f in sorted(context_files):
                if f == rel:
                    target = src / dest / Path(rel).name if dest.endswith("/") else src / dest
                elif f.startswith(rel + "/"):
                    target = src / dest / f[len(rel) + 1 :]
                else:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, target)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("meshgate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT).as_posix()
                assert rel in names, f"{rel} is not in the image's package"
    for script, target in SCRIPTS.items():
        assert f"{script} = {target}" in scripts


@pytest.mark.parametrize(
    ("args", "runs"),
    [
        (("global", "run"), ("meshgate-global", "run")),
        (("zone", "run", "--zone", "zone-1"), ("meshgate-zone", "run", "--zone", "zone-1")),
        (("ctl", "get", "meshes"), ("meshgatectl", "get", "meshes")),
        (("meshgate-zone", "run", "--zone", "a b"), ("meshgate-zone", "run", "--zone", "a b")),
        (
            ("meshgatectl", "--api", "http://x:5681", "get", "meshes"),
            ("meshgatectl", "--api", "http://x:5681", "get", "meshes"),
        ),
        ((), ("meshgate-global", "--help")),
    ],
)
def test_the_entrypoint_script_runs_each_program(tmp_path: Path, args: Command, runs: Command) -> None:
    """Each program is a stand-in that prints its name and arguments, one per line."""
    for program in SCRIPTS:
        stub = tmp_path / program
        stub.write_text('#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@"\n')
        stub.chmod(0o755)
    result = subprocess.run(
        ["sh", str(ENTRYPOINT_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert tuple(result.stdout.splitlines()) == runs
