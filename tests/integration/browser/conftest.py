"""The browser fixtures (Chromium, screenshots, a served example) for every browser test module."""

import pytest

try:
    from tests.integration.browser.test_console_browser import browser, served, shots  # noqa: F401
except pytest.skip.Exception:  # no chromium here: the modules say so themselves
    pass
