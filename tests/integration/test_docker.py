"""`docker compose config` accepts every profile of docker/compose.yaml and enables exactly
the services each one should (it needs a compose client, no engine; skipped without one).

The compose file's structure is also checked without Docker, in
tests/unit/test_deploy_files.py.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.unit.test_deploy_files import COMPOSE_FILE, EXPECTED_SERVICES, PROFILES

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.fixture(scope="module")
def compose_client() -> list[str]:
    client = _compose_client()
    if client is None:
        pytest.skip(
            "No compose client: neither `docker compose` (the Compose v2 plugin) nor "
            "`docker-compose` is installed, so `compose config` cannot run here."
        )
    return client


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_config_accepts_every_profile(compose_client: list[str], profile: str) -> None:
    base = [*compose_client, "-f", str(COMPOSE_FILE), "-p", "pitstop", "--profile", profile]
    checked = subprocess.run(
        [*base, "config", "-q"], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stderr
    if compose_client[-1] == "compose":  # v2 lists only the services a profile enables
        listed = subprocess.run(
            [*base, "config", "--services"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert set(listed.stdout.split()) == EXPECTED_SERVICES[profile]
