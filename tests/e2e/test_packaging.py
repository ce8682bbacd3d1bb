"""The wheel, installed in a fresh virtualenv outside the repository, migrates
its database and serves the console with its own templates and static files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

from tests.server import REPOSITORY, NtorqueServer

# What setup.py builds from; the rest of the checkout (tests, .venv, .git) stays behind.
SOURCES = (
    "setup.py",
    "README.md",
    "pyproject.toml",
    "ntorque",
    "templates",
    "static",
    "migrations",
)
STATIC_LINK = re.compile(r'href="(/console/static/console\.css\?v=\w+)"')


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def build_wheel(tmp_path: Path, marker: str) -> Path:
    """Build from a copy of the sources (the build leaves the checkout untouched),
    with a marker in the stylesheet that only the built copy has."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPOSITORY / name).is_dir():
            shutil.copytree(
                REPOSITORY / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPOSITORY / name, source / name)
    with open(source / "static" / "console.css", "a") as css:
        css.write(f"/* {marker} */\n")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("ntorque-*.whl")
    return wheel


def test_the_installed_wheel_migrates_and_serves_its_console(tmp_path: Path) -> None:
    marker = f"built by test_packaging {uuid.uuid4().hex}"
    wheel = build_wheel(tmp_path, marker)
    run(sys.executable, "-m", "venv", "venv", cwd=tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    elsewhere = tmp_path / "run"  # not the repository: nothing to import from the cwd
    elsewhere.mkdir()
    node = NtorqueServer(
        elsewhere, {"DATABASE_URL": f"sqlite:///{elsewhere / 'ntorque.db'}"}, installed=python
    )

    where = run(
        python,
        "-c",
        "import ntorque; print(ntorque.__file__)",
        cwd=elsewhere,
        env=node.full_environ(),
    )
    site = Path(where.strip()).parent
    assert site.is_relative_to(tmp_path / "venv"), where
    assert (site / "templates" / "login.html").is_file()
    assert "ntorque: applied" in node.command("migrate").stdout

    with node:
        login = node.request("GET", "/console/login")
        assert login.status == 200, login.body
        link = STATIC_LINK.search(login.body.decode())
        assert link, login.body
        css = node.request("GET", link.group(1))
        assert css.status == 200
        assert css.body == (site / "static" / "console.css").read_bytes()
        with zipfile.ZipFile(wheel) as built:
            assert css.body == built.read("ntorque/static/console.css")
        assert marker in css.body.decode()
        assert node.stop() == 0
