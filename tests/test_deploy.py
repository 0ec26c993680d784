"""The deployment files keep their rules (a linter's, by hand, where no Docker daemon builds them):
a non-root image with a HEALTHCHECK, dependencies before source, pinned images; compose with
healthchecks and restart policies, one beat, and only real CALLWATCH_* settings."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from callwatch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PINNED_TAG = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*(@sha256:[0-9a-f]{64})?$")
LONG_RUNNING = ("postgres", "redis", "web", "worker", "beat")
RESTARTING = {"always", "unless-stopped", "on-failure"}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    steps = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            steps.append((instruction.upper(), " ".join(arguments.split())))
    return steps


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(index for index, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def test_every_base_image_is_pinned_and_the_runtime_base_by_digest() -> None:
    images = [args.split()[0] for name, args in dockerfile() if name == "FROM"]
    assert [image for image in images if not PINNED_TAG.match(image)] == []
    assert "@sha256:" in final_stage()[0][1]
    assert any(image.startswith("ghcr.io/astral-sh/uv:") for image in images)


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    users = [args for name, args in final_stage() if name == "USER"]
    assert users != []
    assert users[-1] not in ("root", "0", "0:0")
    names = [name for name, _ in final_stage()]
    assert names.index("USER") < names.index("CMD")


def test_the_image_checks_readiness() -> None:
    [check] = [args for name, args in final_stage() if name == "HEALTHCHECK"]
    assert "/readyz" in check


def test_dependencies_are_installed_from_the_lock_before_the_source_is_copied() -> None:
    steps = final_stage()
    copies = [(index, args) for index, (name, args) in enumerate(steps) if name == "COPY"]
    [deps] = [
        index
        for index, (name, args) in enumerate(steps)
        if name == "RUN" and "uv sync --frozen" in args and "--no-install-project" in args
    ]
    source = min(index for index, args in copies if args.split()[0] in ("src", "workers"))
    before = [args for index, args in copies if index < deps and "--from=" not in args]
    assert deps < source
    assert before == ["pyproject.toml uv.lock ./"]


def test_compose_checks_health_and_restarts_every_long_running_service() -> None:
    services = compose()["services"]
    assert {name: services[name].get("restart") in RESTARTING for name in LONG_RUNNING} == {
        name: True for name in LONG_RUNNING
    }
    assert services["migrations"]["restart"] == "no"
    checks = {name: services[name].get("healthcheck", {}) for name in services}
    assert "/readyz" in " ".join(checks["web"]["test"])
    assert [bool(checks[name].get("test")) for name in ("postgres", "redis")] == [True, True]
    # The image's check is for web; workers, beat and migrations serve no HTTP.
    assert [checks[name].get("disable") for name in ("worker", "beat", "migrations")] == [True] * 3


def test_compose_runs_exactly_one_beat_and_pins_its_images() -> None:
    services = compose()["services"]
    assert services["beat"]["deploy"]["replicas"] == 1
    images = [service["image"] for service in services.values() if "build" not in service]
    assert [image for image in images if not PINNED_TAG.match(image)] == []


@pytest.mark.parametrize("name", ["docker-compose.yml", ".env.example"])
def test_only_real_settings_are_set(name: str) -> None:
    named = set(re.findall(r"\bCALLWATCH_([A-Z_]+)", (ROOT / name).read_text()))
    assert named - {field.upper() for field in Settings.model_fields} == set()
    assert {"ADMIN_TOKEN", "SECRET_KEY", "PUBLIC_URL"} <= named


def test_the_procfile_runs_migrations_and_every_process() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    processes = dict(line.split(": ", 1) for line in lines if line.strip())
    assert sorted(processes) == ["beat", "release", "web", "worker"]
    assert processes["release"] == "callwatch migrate"
