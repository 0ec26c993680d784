"""The command line's own behaviour: fast help, its version, usage and one-line errors."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from callwatch.cli.commands import PLATFORM_NAMES
from callwatch.cli.main import main
from callwatch.simulator import PLATFORMS

# What `--help` must not pay for: each takes from tens of milliseconds to seconds to import.
HEAVY = (
    "celery",
    "httpx",
    "pydantic",
    "pydantic_settings",
    "redis",
    "rich",
    "sqlalchemy",
    "starlette",
    "uvicorn",
)
IMPORTED = """
import sys
from callwatch.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _cli(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "callwatch", *argv],
        cwd=tmp_path,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("argv", [["--help"], ["calls", "list", "--help"], ["up", "--help"]])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED, *argv], capture_output=True, text=True, check=True
    )
    imported = set(done.stdout.split())
    assert "callwatch" in imported
    assert sorted(imported & set(HEAVY)) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    expected = f"callwatch {version('callwatch')}\n"
    assert (exited.value.code, capsys.readouterr().out) == (0, expected)


def test_platform_names_are_the_simulators() -> None:
    assert tuple(sorted(PLATFORMS)) == PLATFORM_NAMES


def test_a_subcommands_mistyped_flag_shows_that_subcommands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["calls", "list", "--stauts", "failed"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.startswith("usage: callwatch calls list [-h]")
    assert err.splitlines()[-1] == (
        "callwatch calls list: error: unrecognized arguments: --stauts failed"
    )


def test_a_bad_database_url_is_one_line(tmp_path: Path) -> None:
    done = _cli(tmp_path, "migrate", CALLWATCH_DATABASE_URL="foo")
    assert (done.returncode, done.stderr) == (
        2,
        "callwatch: CALLWATCH_DATABASE_URL is not a database URL; use "
        "postgresql://USER:PASSWORD@HOST:5432/DB or sqlite:///PATH/callwatch.db\n",
    )


def test_an_unknown_database_driver_is_one_line(tmp_path: Path) -> None:
    done = _cli(tmp_path, "migrate", CALLWATCH_DATABASE_URL="mysql+nope://u:hunter2@h/db")
    assert done.returncode == 2
    assert done.stderr.startswith("callwatch: CALLWATCH_DATABASE_URL is not a database URL")
    assert "hunter2" not in done.stderr


def test_a_database_without_tables_says_to_migrate(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    done = _cli(tmp_path, "source", "list", "--org", "acme", CALLWATCH_DATABASE_URL=url)
    assert (done.returncode, done.stderr) == (
        2,
        "callwatch: the database has no callwatch tables yet: "
        "run `callwatch migrate` with the same CALLWATCH_DATABASE_URL\n",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["source", "list", "--org", "acme"],
        ["replay", "--failed", "--dry-run"],
        ["calls", "list", "--url", "http://127.0.0.1:9", "--api-key", "cw_x"],
    ],
)
def test_a_read_only_command_creates_no_files(tmp_path: Path, argv: list[str]) -> None:
    done = _cli(tmp_path, *argv)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert sorted(tmp_path.iterdir()) == []
