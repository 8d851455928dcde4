"""Fixtures for the tenant tests: an admin key and an AdminService client on the shared
platform."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.conftest import wait_for_languages
from tests.support.admin import AdminClient
from tests.support.platform import Platform


@pytest.fixture(scope="session")
def admin_key(platform: Platform) -> str:
    key = platform.create_tenant(f"ops-{uuid.uuid4().hex[:6]}", admin=True)
    wait_for_languages(platform, key)
    return key


@pytest.fixture
async def admin(platform: Platform, admin_key: str) -> AsyncIterator[AdminClient]:
    async with AdminClient(platform.api_target, admin_key) as client:
        yield client
