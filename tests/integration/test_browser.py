"""The example Django site in headless Chromium over TLS and HTTP/2, as a browser user meets it.

Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium) trusts the test's
server certificate by its public key (``--ignore-certificate-errors-spki-list``), so every
other check of a secure page stays on: secure cookies, the CSRF origin check, HTTP/2 by ALPN.
The site is the one of test_tls_django (SECURE_SSL_REDIRECT, secure cookies, DEBUG off).
Each step reads the page the way a user would and checks the protocol Chromium used.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.test_tls_django import ADMIN_PASSWORD, ADMIN_USER, Site, site

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

__all__ = ["site"]  # the fixture, imported so this module gets its own site

DEADLINE_S = 30.0
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
)


def spki_pin(cert_path: Path) -> str:
    """The base64 SHA-256 of a certificate's public key, as Chromium's SPKI allow-list takes it."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def browser(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in [
        "--headless=new",
        "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={spki_pin(site.certs.cert)}",
    ]:
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER, log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(DEADLINE_S)
    try:
        yield driver
    finally:
        driver.quit()


def protocol_of_page(driver: object) -> str:
    """The protocol Chromium fetched the current page with: "h2", "http/1.1", ..."""
    return driver.execute_script(  # type: ignore[attr-defined,no-any-return]
        "return performance.getEntriesByType('navigation')[0].nextHopProtocol"
    )


def wait_for_heading(driver: object, text: str) -> None:
    # The page may be swapped mid-read (the redirect lands): a stale body is retried.
    WebDriverWait(  # type: ignore[arg-type]
        driver, DEADLINE_S, ignored_exceptions=(StaleElementReferenceException,)
    ).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text)


def test_admin_login_over_http2(site: Site, browser: object) -> None:
    driver = browser
    base = f"https://127.0.0.1:{site.https_port}"
    driver.get(f"{base}/admin/login/?next=/admin/")  # type: ignore[attr-defined]
    assert protocol_of_page(driver) == "h2"
    driver.find_element(By.NAME, "username").send_keys(ADMIN_USER)  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()  # type: ignore[attr-defined]
    wait_for_heading(driver, "Site administration")
    assert driver.current_url == f"{base}/admin/"  # type: ignore[attr-defined]
    assert protocol_of_page(driver) == "h2"
    session = driver.get_cookie("sessionid")  # type: ignore[attr-defined]
    assert session is not None and session["secure"]


def test_csrf_form_post_over_http2(site: Site, browser: object) -> None:
    driver = browser
    base = f"https://127.0.0.1:{site.https_port}"
    title = "Twisted Network Programming Essentials (browser test)"
    driver.get(f"{base}/books/new/")  # type: ignore[attr-defined]
    assert protocol_of_page(driver) == "h2"
    driver.find_element(By.NAME, "title").send_keys(title)  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "author").send_keys("Jessica McKellar")  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "year").send_keys("2013")  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # type: ignore[attr-defined]
    wait_for_heading(driver, title)  # Post/Redirect/Get lands on the list, which names the book
    assert driver.current_url == f"{base}/books/"  # type: ignore[attr-defined]
    assert "Forbidden" not in driver.page_source  # type: ignore[attr-defined]


def test_file_upload_over_http2(
    site: Site, browser: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    driver = browser
    upload = tmp_path_factory.mktemp("upload") / "photo.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)  # several flow-control windows, not a round size
    upload.write_bytes(data)
    driver.get(f"https://127.0.0.1:{site.https_port}/upload/")  # type: ignore[attr-defined]
    assert protocol_of_page(driver) == "h2"
    driver.find_element(By.NAME, "file").send_keys(str(upload))  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # type: ignore[attr-defined]
    WebDriverWait(driver, DEADLINE_S).until(  # type: ignore[arg-type]
        lambda d: d.find_elements(By.ID, "upload-sha256")
    )
    assert driver.find_element(By.ID, "upload-name").text == "photo.bin"  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "upload-size").text == f"{len(data)} bytes"  # type: ignore[attr-defined]
    assert (
        driver.find_element(By.ID, "upload-sha256").text  # type: ignore[attr-defined]
        == hashlib.sha256(data).hexdigest()
    )
