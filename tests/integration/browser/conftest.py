"""A real browser for the page's tests: headless Chromium driven by Selenium through chromedriver.

Both come from the system (Debian's `chromium` and `chromium-driver`); without
them, or without the selenium package, every test here is skipped with the
reason. Nothing is downloaded: the driver's path is given, so Selenium never
looks one up, and Chromium runs with its background networking off.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

CHROMIUM = os.environ.get("FOREWARN_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("FOREWARN_TEST_CHROMEDRIVER") or shutil.which("chromedriver")


def _missing() -> str | None:
    if not CHROMIUM:
        return "no Chromium on this machine (Debian package chromium; .ci/run installs it)"
    if not CHROMEDRIVER:
        return "no chromedriver on this machine (Debian package chromium-driver; .ci/run installs it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[test]')"
    return None


def pytest_collection_modifyitems(config, items):
    why = _missing()
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"browser tests: {why}")
    for item in items:
        if "tests/integration/browser/" in str(item.fspath):
            item.add_marker(skip)


def new_browser():
    """A headless Chromium with an empty profile of its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="forewarn-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000", f"--user-data-dir={profile}", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.profile_dir = profile
    return driver


@pytest.fixture
def browser():
    driver = new_browser()
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(driver.profile_dir, ignore_errors=True)
