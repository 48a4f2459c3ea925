"""A local SMTP server for tests (aiosmtpd): every message it receives is
written to OUT_DIR as JSON (envelope, headers, decoded parts), and as it
arrived beside it (NNNNNN.eml, for signature checks). With --auth,
only the login user/secret is accepted. Prints "ready PORT" once listening
and stops when its stdin closes, so it never outlives the test."""

import argparse
import email
import email.policy
import json
import logging
import os
import socket
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = []
        for part in message.walk():
            if part.is_multipart():
                parts.append({"content_type": part.get_content_type()})
                continue
            payload = part.get_payload(decode=True) or b""
            entry = {"content_type": part.get_content_type(), "filename": part.get_filename(), "size": len(payload)}
            if part.get_content_maintype() == "text":
                entry["text"] = payload.decode(part.get_content_charset() or "utf-8", "replace")
            parts.append(entry)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "parts": parts,
        }
        self.count += 1
        path = os.path.join(self.out, "%06d.json" % self.count)
        with open(os.path.join(self.out, "%06d.eml" % self.count), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"user" and auth_data.password == b"secret"
    # handled=False: the server itself answers 535 on failure
    return AuthResult(success=ok, handled=False)


def main():
    warnings.filterwarnings("ignore")  # AUTH without TLS is what the tests want
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--auth", action="store_true")
    args = parser.parse_args()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    extra = {}
    if args.auth:
        extra = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
    controller = Controller(Sink(args.out), hostname="127.0.0.1", port=port, data_size_limit=64 * 1024 * 1024, **extra)
    controller.start()
    print("ready %d" % port, flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
