"""Packaging for ntorque: a self-hosted, durable web-hook task queue."""

from setuptools import find_packages, setup

setup(
    name="ntorque",
    version="0.1.0",
    description="Self-hosted, durable web-hook task queue in one Tornado process",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # migrations/ lives at the top of the repository (Alembic's home) but ships
    # inside the package, so an installed ntorque can migrate its own database.
    # templates/ and static/ (the console's) ship the same way. The code's own
    # subpackages are found, not listed: a listed one was once left out
    # (tests/e2e/test_packaging.py installs the wheel and runs it).
    packages=[
        *find_packages(include=["ntorque", "ntorque.*"]),
        "ntorque.migrations",
        "ntorque.migrations.versions",
        "ntorque.templates",
        "ntorque.static",
    ],
    package_dir={
        "ntorque": "ntorque",
        "ntorque.templates": "templates",
        "ntorque.static": "static",
        "ntorque.migrations": "migrations",
        "ntorque.migrations.versions": "migrations/versions",
    },
    package_data={
        "ntorque.migrations": ["script.py.mako"],
        "ntorque.templates": ["*.html"],
        "ntorque.static": ["*.css", "*.js"],
    },
    install_requires=[
        "tornado>=6.4",
        "pycurl>=7.45",
        "sqlalchemy[asyncio]>=2.0.30",
        "asyncpg>=0.29",
        "aiosqlite>=0.20",
        "alembic>=1.13",
        "redis>=5.0",
        "jinja2>=3.1",
        "pyyaml>=6.0",
        # Cron expressions for schedules: Debian cron's rules, daylight-saving
        # changes included, and the rule in words; tzdata where the system has
        # no time zone database.
        "cronsim>=2.6",
        "tzdata>=2024.1",
        # /metrics: the Prometheus text format and its multiprocess mode (one
        # endpoint summing every process of `serve --processes N`), both
        # subtle to write by hand and well kept there.
        "prometheus-client>=0.20",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-asyncio>=0.24",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.6",  # two workers keep the suite within 6 minutes on 2 cores
            "playwright>=1.45",  # drives Debian's chromium in the console's browser test
            "trustme>=1.1",
            "standardwebhooks>=1.1",  # the reference verifier of signed calls
            "hypothesis>=6.100",
            "ruff>=0.6",
            "mypy>=1.11",
            "import-linter>=2.1",  # the layering contracts in pyproject.toml
            # /openapi.json: validated by the reference validator, and fuzzed
            # against a live node by schemathesis (every check it has: no 5xx,
            # answers as documented, valid data taken and invalid refused).
            "openapi-spec-validator>=0.7",
            "schemathesis>=4.0",
            "types-PyYAML",
            # Runs the Procfile in tests/e2e/test_procfile.py, as a user would
            # (its shell per line, its ports, its stop and kill).
            "honcho>=2.0",
        ],
        # `python -m bench --peers` (bench/peers/): the task queues ntorque is
        # measured against, each through its own client library, and aiohttp
        # for their workers' hook calls (httpx took ~25x its CPU per call with
        # 50 in flight). arq requires redis < 6, so this extra moves redis back
        # to 5.x: install it in a venv of its own (bench/README.md). Celery and
        # kombu stay below 5.7, whose Redis transport needs redis >= 6.4 (pip
        # would otherwise backtrack to a kombu that no longer builds).
        "bench": [
            "arq>=0.26",
            "celery[redis]>=5.4,<5.7",
            "kombu>=5.4,<5.7",
            "procrastinate>=3.0",
            "aiohttp>=3.9",
        ],
    },
    entry_points={"console_scripts": ["ntorque = ntorque.__main__:main"]},
)
