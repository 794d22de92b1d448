#!/usr/bin/env python3
"""Obtain an access token from a running ucca-auth for the HTTP load benchmark.

Drives the whole OAuth 2.1 flow over loopback, as a browser and a client would:
registers a confidential client through the ops API, signs a user in by magic
link (reading the link from the server's outbox directory), consents on the
authorize page with a PKCE S256 challenge, and exchanges the code. Prints the
access token on standard output.

Usage: obtain-token.py PUBLIC_URL OPS_URL OPS_API_KEY OUTBOX_DIR EMAIL
"""

import base64
import hashlib
import html
import http.client
import json
import os
import re
import secrets
import sys
import time
import urllib.parse

REDIRECT_URI = "http://127.0.0.1:7000/cb"


class Browser:
    """Keeps cookies and follows no redirects."""

    def __init__(self):
        self.cookies = {}

    def request(self, method, url, body=None, headers=None):
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        path = parts.path + ("?" + parts.query if parts.query else "")
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        connection.close()
        return response.status, dict((name.lower(), value) for name, value in response.getheaders()), text

    def post_form(self, url, fields, headers=None):
        headers = dict(headers or {})
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.request("POST", url, urllib.parse.urlencode(fields), headers)


def hidden_fields(page):
    pattern = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')
    return [(html.unescape(name), html.unescape(value)) for name, value in pattern.findall(page)]


def hidden(page, name):
    for field, value in hidden_fields(page):
        if field == name:
            return value
    sys.exit(f"obtain-token: the page has no hidden field {name}")


def expect(status, wanted, step, text):
    if status != wanted:
        sys.exit(f"obtain-token: {step} returned HTTP {status}, expected {wanted}: {text[:300]}")


def mailed_link(outbox, issuer, email):
    needle = f"{issuer}/auth/verify?token="
    for _ in range(50):
        if os.path.isdir(outbox):
            paths = sorted((os.path.join(outbox, name) for name in os.listdir(outbox) if name.endswith(".eml")),
                           key=os.path.getmtime, reverse=True)
            for path in paths:
                with open(path, encoding="utf-8", errors="replace") as message:
                    text = message.read()
                if f"To: {email}" in text and needle in text:
                    start = text.index(needle)
                    return re.match(r"\S+", text[start:]).group(0)
        time.sleep(0.1)
    sys.exit(f"obtain-token: no sign-in link for {email} appeared in {outbox}")


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    public, ops, ops_key, outbox, email = sys.argv[1:]
    browser = Browser()

    body = json.dumps({
        "client_name": "Load benchmark",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "client_secret_basic",
    })
    status, _, text = browser.request("POST", f"{ops}/ops/clients", body,
                                      {"Authorization": f"Bearer {ops_key}", "Content-Type": "application/json"})
    expect(status, 201, "client registration", text)
    client = json.loads(text)

    status, _, form = browser.request("GET", f"{public}/auth")
    expect(status, 200, "sign-in page", form)
    status, _, text = browser.post_form(f"{public}/auth/email", [("csrf_token", hidden(form, "csrf_token")), ("email", email)])
    expect(status, 200, "sign-in request", text)
    status, _, confirm = browser.request("GET", mailed_link(outbox, public, email))
    expect(status, 200, "link confirmation page", confirm)
    status, _, text = browser.post_form(f"{public}/auth/verify",
                                        [("csrf_token", hidden(confirm, "csrf_token")), ("token", hidden(confirm, "token"))])
    expect(status, 303, "link confirmation", text)

    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "load-benchmark",
    })
    status, headers, consent = browser.request("GET", f"{public}/oauth/authorize?{query}")
    if status == 200:
        status, headers, text = browser.post_form(f"{public}/oauth/authorize", hidden_fields(consent) + [("decision", "allow")])
    expect(status, 303, "authorization", consent)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query).get("code")
    if not code:
        sys.exit(f"obtain-token: the authorization redirect carries no code: {headers['location']}")

    credentials = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    status, _, text = browser.post_form(
        f"{public}/oauth/token",
        [("grant_type", "authorization_code"), ("code", code[0]), ("redirect_uri", REDIRECT_URI), ("code_verifier", verifier)],
        {"Authorization": f"Basic {credentials}"},
    )
    expect(status, 200, "code exchange", text)
    print(json.loads(text)["access_token"])


if __name__ == "__main__":
    main()
