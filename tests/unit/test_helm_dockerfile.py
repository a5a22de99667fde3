"""The server image's Dockerfile, checked against the package layout and the chart.

No Docker engine runs here, so the image is never built in CI; these tests catch the mistakes
that would only show when it is: a package folder left out of the image, a user the chart's
runAsNonRoot would reject, torch pulled as the CUDA build.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]


def _stages() -> dict[str, list[str]]:
    """Instructions per build stage, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    stages: dict[str, list[str]] = {}
    current = ""
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip()
            stages[current] = []
        elif current:
            stages[current].append(line)
    return stages


def test_every_package_folder_is_copied_into_the_build_and_not_ignored() -> None:
    # package-dir = { "llmsight" = "sdk", "llmsight.store" = "store", ... } (tomllib is 3.11+)
    package_dir = re.search(r"^package-dir = \{(.+)\}$", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert package_dir is not None
    folders = set(re.findall(r'"llmsight[\w.]*" = "(\w+)"', package_dir.group(1)))
    assert {"sdk", "store", "collector", "analyzers", "dashboard", "cli"} <= folders
    copied = {m.group(1) for m in re.finditer(r"^COPY (\w+) \./\1$", "\n".join(_stages()["build"]), re.MULTILINE)}
    assert folders - copied == set(), "package folders missing from the image"
    for folder in folders | {"pyproject.toml", "README.md"}:
        assert not any(fnmatch.fnmatch(folder, pattern) for pattern in DOCKERIGNORE), folder


def test_torch_is_the_cpu_build_installed_before_the_project() -> None:
    build = _stages()["build"]
    torch = next(i for i, line in enumerate(build) if "torch==" in line)
    project = next(i for i, line in enumerate(build) if 'pip install ".[server]"' in line)
    assert "--index-url https://download.pytorch.org/whl/cpu" in build[torch]
    assert torch < project
    assert "assert not torch.version.cuda" in build[project]


def test_runtime_runs_llmsight_under_tini_as_the_numeric_user_the_chart_expects() -> None:
    runtime = _stages()["runtime"]
    user = next(line for line in runtime if line.startswith("USER "))
    uid, gid = user.split()[1].split(":")
    # Kubernetes can only check runAsNonRoot against a numeric USER.
    values = yaml.safe_load((ROOT / "helm" / "llmsight" / "values.yaml").read_text())
    assert (int(uid), int(gid)) == (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"])
    assert int(uid) != 0
    entrypoint = next(line for line in runtime if line.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["tini", "--", "llmsight"]
    assert "COPY --from=build /opt/llmsight /opt/llmsight" in runtime
    exposed = next(line for line in runtime if line.startswith("EXPOSE ")).split()[1:]
    assert sorted(int(p) for p in exposed) == sorted(
        [values["collector"]["port"], values["analyzers"]["port"], values["dashboard"]["port"]])
