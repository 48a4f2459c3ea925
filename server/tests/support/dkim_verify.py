"""Verifies the DKIM signature of a message file with dkimpy, answering the
key lookup from the command line instead of DNS:

    dkim_verify.py MESSAGE.eml SELECTOR._domainkey.DOMAIN "v=DKIM1; k=rsa; p=..."

Exits 0 and prints "ok" when the signature verifies, else 1 with dkimpy's log."""

import logging
import sys

import dkim


def main():
    path, name, record = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(path, "rb") as f:
        message = f.read()
    asked = []

    def dnsfunc(qname, timeout=5):
        qname = qname.decode() if isinstance(qname, bytes) else qname
        asked.append(qname)
        return record.encode() if qname.rstrip(".").lower() == name.rstrip(".").lower() else None

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
    ok = dkim.verify(message, logger=logging.getLogger("dkim"), dnsfunc=dnsfunc)
    print("ok" if ok else "fail (asked for %s)" % asked)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
