"""The documentation keeps up with the code: every setting documented, the README a front door."""

import subprocess
from pathlib import Path

from callwatch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = "../" + "shared"  # the steering folder beside a checkout, which a clone lacks


def test_every_setting_is_documented() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    documented = {name for name in Settings.model_fields if f"`CALLWATCH_{name.upper()}`" in page}
    assert set(Settings.model_fields) - documented == set()


def test_the_readme_is_a_front_door() -> None:
    assert (ROOT / "README.md").stat().st_size <= 10 * 1024


def test_nothing_refers_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = [
        name
        for name in tracked
        if name.endswith((".py", ".md", ".toml", ".yml", ".cfg", ".ini"))
        and OUTSIDE in (ROOT / name).read_text()
    ]
    assert outside == []
