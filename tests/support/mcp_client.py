"""Drive a ucca-auth MCP endpoint with the official MCP Python SDK, as an MCP client would.

The Rust test `tests/api/mcp.rs` starts the real server and runs this script with the
SDK installed in a virtual environment (see `.ci/run`). The script talks only to the
server URL it is given, which the test binds to loopback.

Steps, each printed as `ok <step>` or `FAILED <step>: <reason>`:
  1. Keyless: connect, list the tools, and get a free-tier search (one result).
  2. Keyless: a gated tool is refused.
  3. With OAuthClientProvider: calling a gated tool gets 401, and the SDK discovers the
     metadata, registers itself, runs PKCE through a scripted sign-in, and retries.
  4. Step-up: a professional tool gets 403 insufficient_scope and the SDK re-authorizes.
  5. Refresh: after the short access-token lifetime the SDK refreshes without a new sign-in.

The sign-in is scripted like a person at a browser. An HTTP client that keeps cookies
opens the authorization URL and enters the email address. It reads the link from the
mail files in `<data-dir>/outbox/`, confirms it, and allows access on the consent page.
The code from the final redirect goes back to the SDK through its callback handler.
The script exits 0 only if every step passed, and never prints a token or code.
"""

import argparse
import asyncio
import html
import re
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPError

# The loopback redirect URI the client registers. Nothing listens there: the scripted
# browser reads the code from the redirect instead of following it.
REDIRECT_URI = "http://127.0.0.1:53682/callback"
CORPUS_TOOLS = ["components", "employment_signals", "ladder", "lookup", "pathway", "search"]
HIDDEN_FIELD = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


class Steps:
    """Records each step's outcome, so one failure does not hide the others."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def check(self, step: str, condition: bool, detail: str = "") -> bool:
        if condition:
            self.passed += 1
            print(f"ok {step}", flush=True)
        else:
            self.failed.append(step)
            print(f"FAILED {step}: {detail}", flush=True)
        return condition


class MemoryStorage:
    """Token storage that keeps everything in memory and counts the token sets it receives."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.token_sets = 0

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.token_sets += 1

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class ScriptedBrowser:
    """Signs in and approves consent at the authorization server, standing in for a person."""

    def __init__(self, base: str, outbox: Path, email: str) -> None:
        self.base = base
        self.outbox = outbox
        self.email = email
        self.http = httpx2.AsyncClient(follow_redirects=False, timeout=20)
        self.pending: AuthorizationCodeResult | None = None
        self.sign_ins = 0
        self.authorizations = 0

    async def redirect_handler(self, authorization_url: str) -> None:
        """Receives the authorization URL the SDK built, and runs sign-in and consent."""
        self.authorizations += 1
        page = await self.http.get(authorization_url)
        if page.status_code == 303 and page.headers["location"].startswith("/auth?"):
            page = await self.sign_in(page.headers["location"])
        if page.status_code == 200:
            fields = hidden_fields(page.text)
            fields["decision"] = "allow"
            page = await self.http.post(urljoin(self.base, "/oauth/authorize"), data=fields)
        if page.status_code != 303:
            raise RuntimeError(f"authorization did not redirect back (HTTP {page.status_code})")
        callback = urlparse(page.headers["location"])
        query = {name: values[0] for name, values in parse_qs(callback.query).items()}
        if "code" not in query:
            raise RuntimeError(f"authorization was refused: {query.get('error')} {query.get('error_description')}")
        self.pending = AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    async def callback_handler(self) -> AuthorizationCodeResult:
        """Hands the code from the last redirect to the SDK."""
        if self.pending is None:
            raise RuntimeError("the SDK asked for a code before any authorization ran")
        result, self.pending = self.pending, None
        return result

    async def sign_in(self, sign_in_path: str) -> httpx2.Response:
        """Requests a magic link, reads it from the outbox, confirms it, and follows the return to authorization."""
        self.sign_ins += 1
        form = await self.http.get(urljoin(self.base, sign_in_path))
        fields = hidden_fields(form.text)
        fields["email"] = self.email
        known = set(self.outbox.glob("*.eml")) if self.outbox.exists() else set()
        sent = await self.http.post(urljoin(self.base, "/auth/email"), data=fields)
        if sent.status_code != 200:
            raise RuntimeError(f"requesting a sign-in link answered HTTP {sent.status_code}")

        link = await self.wait_for_link(known)
        confirm = await self.http.get(link)
        signed_in = await self.http.post(urljoin(self.base, "/auth/verify"), data=hidden_fields(confirm.text))
        if signed_in.status_code != 303:
            raise RuntimeError(f"confirming the sign-in link answered HTTP {signed_in.status_code}")
        return await self.http.get(urljoin(self.base, signed_in.headers["location"]))

    async def wait_for_link(self, known: set[Path]) -> str:
        """Waits for a new mail to the address and returns its sign-in link."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for path in sorted(set(self.outbox.glob("*.eml")) - known):
                text = path.read_text()
                if f"To: {self.email}" not in text:
                    continue
                # Quoted-printable mail may wrap long lines with a trailing '='.
                unwrapped = text.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
                match = re.search(re.escape(self.base) + r"/auth/verify\?token=[0-9a-f]+", unwrapped)
                if match:
                    return match.group(0)
            await asyncio.sleep(0.1)
        raise RuntimeError(f"no sign-in mail to {self.email} arrived in {self.outbox}")


def hidden_fields(page: str) -> dict[str, str]:
    return {html.unescape(name): html.unescape(value) for name, value in HIDDEN_FIELD.findall(page)}


def structured(result) -> dict:
    return result.structured_content or {}


async def keyless(mcp_url: str, steps: Steps) -> None:
    async with Client(mcp_url) as client:
        tools = await client.list_tools()
        names = sorted(tool.name for tool in tools.tools)
        steps.check("keyless tools/list names the corpus tools", names == CORPUS_TOOLS, f"got {names}")

        search = await client.call_tool("search", {"query": "business", "limit": 5})
        content = structured(search)
        steps.check("keyless search succeeds", not search.is_error, f"isError with {content}")
        steps.check("keyless search returns one result", content.get("count") == 1, f"count {content.get('count')}")

        try:
            await client.call_tool("components", {"code": "BSBWHS211"})
            refused, detail = False, "the call succeeded"
        except MCPError as error:
            refused, detail = True, str(error)
        steps.check("keyless components is refused", refused, detail)


async def signed_in(args: argparse.Namespace, mcp_url: str, steps: Steps) -> None:
    browser = ScriptedBrowser(args.base, Path(args.data_dir) / "outbox", args.email)
    storage = MemoryStorage()
    metadata = OAuthClientMetadata(
        client_name="MCP Python SDK interop test",
        redirect_uris=[REDIRECT_URI],
        # The server registers a self-registered client as public and reports it in the response, which the SDK must follow.
        token_endpoint_auth_method="client_secret_post",
    )
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with Client(streamable_http_client(mcp_url, http_client=http)) as client:
            search = await client.call_tool("search", {"query": "business", "limit": 5})
            steps.check("search before sign-in stays keyless", structured(search).get("count") == 1, str(structured(search)))
            steps.check("no authorization before a gated call", browser.authorizations == 0, f"{browser.authorizations} ran")

            components = await client.call_tool("components", {"code": "BSBWHS211"})
            elements = structured(components).get("elements") or []
            steps.check("components after sign-in returns elements", not components.is_error and len(elements) == 3, str(structured(components)))
            steps.check("sign-in ran once", browser.sign_ins == 1 and browser.authorizations == 1, f"{browser.sign_ins} sign-ins, {browser.authorizations} authorizations")
            info = storage.client_info
            steps.check("registered as a public client", info is not None and info.token_endpoint_auth_method == "none", f"{info and info.token_endpoint_auth_method}")
            steps.check("the token carries the developer scope", storage.tokens is not None and "rtopacks:developer" in (storage.tokens.scope or ""), f"scope {storage.tokens and storage.tokens.scope}")

            search = await client.call_tool("search", {"query": "business", "limit": 5})
            steps.check("search with a token returns more than the free tier", (structured(search).get("count") or 0) > 1, str(structured(search).get("count")))

            pathway = await client.call_tool("pathway", {"from": "BSB30120", "to": "BSB40120"})
            steps.check("pathway after step-up succeeds", not pathway.is_error and structured(pathway).get("to") == "BSB40120", str(structured(pathway)))
            steps.check("step-up re-authorized without a new sign-in", browser.authorizations == 2 and browser.sign_ins == 1, f"{browser.sign_ins} sign-ins, {browser.authorizations} authorizations")
            steps.check("the new token carries the professional scope", "rtopacks:professional" in (storage.tokens.scope or ""), f"scope {storage.tokens.scope}")

            unknown = await client.call_tool("lookup", {"code": "NOSUCH123"})
            steps.check("an unknown code is a tool error", unknown.is_error, str(structured(unknown)))

            before = storage.token_sets
            access_before = storage.tokens.access_token
            await asyncio.sleep(args.access_ttl + 1)
            ladder = await client.call_tool("ladder", {"code": "BSB30120"})
            steps.check("ladder after the access token expired succeeds", not ladder.is_error, str(structured(ladder)))
            steps.check("the token was refreshed", storage.token_sets == before + 1 and storage.tokens.access_token != access_before, f"{storage.token_sets - before} new token sets")
            steps.check("refresh needed no authorization", browser.authorizations == 2, f"{browser.authorizations} authorizations")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the server's public base URL, such as http://127.0.0.1:8080")
    parser.add_argument("--data-dir", required=True, help="the server's data directory, whose outbox/ holds sign-in mail")
    parser.add_argument("--email", required=True, help="the address to sign in with; it must hold rtopacks:professional")
    parser.add_argument("--access-ttl", type=int, required=True, help="the server's access token lifetime, in seconds")
    args = parser.parse_args()

    mcp_url = f"{args.base}/mcp"
    steps = Steps()
    for scenario in (keyless, lambda url, s: signed_in(args, url, s)):
        try:
            await scenario(mcp_url, steps)
        except Exception as error:  # a step that raised fails, and the next scenario still runs
            steps.check(f"scenario runs to its end ({type(error).__name__})", False, repr(error))
    print(f"mcp interop: {steps.passed} passed, {len(steps.failed)} failed", flush=True)
    return 0 if not steps.failed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
