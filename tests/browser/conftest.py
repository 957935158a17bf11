"""The fixture both browser test modules drive Chromium through."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def playwright_api() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "the playwright package is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; in CI a skipped browser test is a failure")
        pytest.skip(message)
    with sync_playwright() as p:
        yield p
