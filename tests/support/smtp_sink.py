"""An SMTP server for the integration tests: accepts mail on a loopback port
and writes each message to a directory, one .eml file per message.

It prints "listening on <port>" once it accepts connections. Every delivery
attempt (each DATA command) is appended to attempts.log in the directory, with
the reply given, so a test can count attempts. With --fail-first N the first N
attempts get --fail-reply instead of being accepted, so a test can exercise
retries (451) or permanent failures (550). With --auth USER:PASS
the server offers AUTH PLAIN and LOGIN without TLS and accepts only those
credentials.

Runs on Python 3.11 with aiosmtpd 1.4; the server stops when stdin closes, so
it never outlives the test that started it.
"""

import argparse
import asyncio
import logging
import os
import sys

from aiosmtpd.smtp import SMTP, AuthResult


class Sink:
    def __init__(self, directory, fail_first, fail_reply):
        self.directory = directory
        self.failures_left = fail_first
        self.fail_reply = fail_reply
        self.accepted = 0

    def log_attempt(self, reply):
        with open(os.path.join(self.directory, "attempts.log"), "a", encoding="ascii") as log:
            log.write(reply + "\n")

    async def handle_DATA(self, server, session, envelope):
        if self.failures_left > 0:
            self.failures_left -= 1
            self.log_attempt(self.fail_reply)
            return self.fail_reply

        self.accepted += 1
        name = "message-%04d.eml" % self.accepted
        # Written under a temporary name and renamed, so a reader never sees half a message.
        temporary = os.path.join(self.directory, "." + name + ".tmp")
        with open(temporary, "wb") as file:
            file.write(envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode())
        os.replace(temporary, os.path.join(self.directory, name))
        self.log_attempt("250")
        return "250 2.0.0 Message accepted"


def authenticator_for(expected_user, expected_password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        login = getattr(auth_data, "login", b"") or b""
        password = getattr(auth_data, "password", b"") or b""
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        # handled=False lets aiosmtpd send the standard 535 reply on failure.
        return AuthResult(success=(login == expected_user and password == expected_password), handled=False)

    return authenticate


async def serve(arguments):
    sink = Sink(arguments.directory, arguments.fail_first, arguments.fail_reply)
    options = {"hostname": "sink.test"}
    if arguments.auth:
        user, _, password = arguments.auth.partition(":")
        options.update(
            authenticator=authenticator_for(user, password),
            auth_required=True,
            auth_require_tls=False,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, **options), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print("listening on %d" % port, flush=True)

    # The test keeps stdin open, and end of input means the test is done.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


def main():
    # aiosmtpd logs a notice per connection about AUTH without TLS, which these tests use on purpose.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True, help="where received messages and attempts.log are written")
    parser.add_argument("--fail-first", type=int, default=0, help="answer this many delivery attempts with --fail-reply")
    parser.add_argument("--fail-reply", default="451 4.3.0 Try again later", help="SMTP reply for the failed attempts")
    parser.add_argument("--auth", help="USER:PASSWORD to require through AUTH PLAIN or LOGIN")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
