"""The example Django site over real TLS: request.is_secure(), CSRF over HTTPS, SSL redirect.

`python manage.py server` serves a migrated copy of examples/djangosite on an ``ssl:``
and a plain ``tcp:`` port at once, with SECURE_SSL_REDIRECT and secure cookies on (a
settings module written beside the copy). Django trusts wsgi.url_scheme for is_secure().
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import ssl
import sys
import urllib.parse
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest

from tests.conftest import ROOT, Running
from tests.integration.test_django import prepare_site
from tests.integration.tlscerts import Certs, make_certs

EXAMPLE = ROOT / "examples" / "djangosite"
DEADLINE_S = 30.0
ADMIN_USER, ADMIN_PASSWORD = "demo", "demo-password"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ADDRESS = re.compile(r"(https?)://127\.0\.0\.1:(\d+)")

SECURE_SETTINGS = '''\
"""The example site as it would run directly on the net over HTTPS."""
from djangosite.settings import *  # noqa: F403

SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
'''


class Site:
    def __init__(self, running: Running, https_port: int, http_port: int, certs: Certs):
        self.running = running
        self.https_port = https_port
        self.http_port = http_port
        self.certs = certs
        self.context = ssl.create_default_context(cafile=str(certs.ca))
        # http.client speaks HTTP/1.1 only: offering h2 as a browser does would get HTTP/2.
        self.context.set_alpn_protocols(["http/1.1"])

    def https(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.https_port, timeout=DEADLINE_S, context=self.context
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    root = tmp_path_factory.mktemp("djangosite")
    ignore = shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles", "media")
    shutil.copytree(EXAMPLE, root, dirs_exist_ok=True, ignore=ignore)
    (root / "djangosite" / "secure_settings.py").write_text(SECURE_SETTINGS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREADLE_")}
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SETTINGS_MODULE="djangosite.secure_settings",
        PYTHONPATH=str(ROOT / "src"),
        DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
    )
    prepare_site(root, env)
    ssl_bind = f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"
    running = Running(
        [
            sys.executable,
            "manage.py",
            "server",
            "--noreload",
            "--bind",
            ssl_bind,
            "--bind",
            "tcp:0:interface=127.0.0.1",
        ],
        env=env,
        cwd=root,
    )
    try:
        line = running.wait_for_line("Listening at:", DEADLINE_S)
        ports = {scheme: int(port) for scheme, port in ADDRESS.findall(line)}
        assert set(ports) == {"https", "http"}, line
        yield Site(running, ports["https"], ports["http"], certs)
    finally:
        running.stop()
        running._reader.join(DEADLINE_S)
        if running.proc.stdout is not None:
            running.proc.stdout.close()


def cookies_of(response: http.client.HTTPResponse) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return jar


def test_https_is_served_without_a_redirect(site: Site) -> None:
    connection = site.https()
    connection.request("GET", "/admin/login/")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200, (response.status, response.getheader("Location"))


def test_plain_http_is_redirected_to_https(site: Site) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", site.http_port, timeout=DEADLINE_S)
    connection.request("GET", "/admin/login/?next=/admin/")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 301
    assert response.getheader("Location") == (
        f"https://127.0.0.1:{site.http_port}/admin/login/?next=/admin/"
    )


def test_csrf_protected_login_over_https(site: Site) -> None:
    origin = f"https://127.0.0.1:{site.https_port}"
    connection = site.https()
    connection.request("GET", "/admin/login/?next=/admin/")
    page = connection.getresponse()
    body = page.read().decode()
    assert page.status == 200
    csrf = cookies_of(page)["csrftoken"]
    assert csrf["secure"], "the CSRF cookie is marked Secure over HTTPS"
    token = CSRF_INPUT.search(body)
    assert token, body
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
        }
    )
    connection.request(
        "POST",
        "/admin/login/?next=/admin/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf.value}",
            "Origin": origin,
            "Referer": f"{origin}/admin/login/?next=/admin/",
        },
    )
    answer = connection.getresponse()
    answer_body = answer.read().decode()
    assert answer.status == 302, answer_body[:2000]
    assert answer.getheader("Location") == "/admin/"
    session = cookies_of(answer)["sessionid"]
    assert session["secure"]
    connection.request("GET", "/admin/", headers={"Cookie": f"sessionid={session.value}"})
    admin = connection.getresponse()
    assert admin.status == 200
    assert "Site administration" in admin.read().decode()
    connection.close()
