"""A console visitor for tests: keeps cookies, follows no redirects, reads forms."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

from tests.server import NtorqueServer

XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')
KEY_LINE = re.compile(r"its API key: (\S+)")


@dataclass
class Page:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


@dataclass
class Session:
    server: NtorqueServer
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> Page:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        sent = {"Accept": "text/html", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urlencode(form).encode() if form is not None else None
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body, sent)
            answer = connection.getresponse()
            page = Page(answer.status, answer.headers, answer.read().decode())
        finally:
            connection.close()
        for line in page.cookies():
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        return page

    def get(self, path: str, **headers: str) -> Page:
        return self.request("GET", path, None, **headers)

    def post(self, path: str, form: dict[str, str] | None = None, xsrf: bool = True) -> Page:
        """A form POST carrying the XSRF token of the page it came from (unless told not to)."""
        data = dict(form or {})
        if xsrf:
            data["_xsrf"] = self.xsrf_token()
        return self.request("POST", path, data)

    def xsrf_token(self) -> str:
        """The token a page's forms carry (the XSRF cookie's value will do once set)."""
        if "_xsrf" in self.cookies:
            return self.cookies["_xsrf"]
        page = self.get("/console/login")
        match = XSRF_FIELD.search(page.text)
        assert match, page.text
        return match.group(1)

    def login(self, key: str) -> Page:
        page = self.post("/console/login", {"key": key})
        assert page.status == 303 and page.location == "/console", (page.status, page.text)
        return page

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


def create_app(server: NtorqueServer, name: str, *extra: str) -> str:
    """A new application made with the command line; its API key."""
    done = server.command("create-app", "--name", name, *extra)
    match = KEY_LINE.search(done.stdout)
    assert match, done.stdout
    return match.group(1)


def enqueue(server: NtorqueServer, key: str, url: str, **options: Any) -> dict[str, Any]:
    return server.enqueue(url, key=key, **options)
