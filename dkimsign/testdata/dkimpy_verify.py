#!/usr/bin/python3
"""Verify every DKIM-Signature of a message with dkimpy (python3-dkim) for
tollgate's interop tests, with DNS from a JSON file {"name": ["txt", ...]},
never the network.

    dkimpy_verify.py DNS.json < message
        prints [{"d": ..., "s": ..., "a": ..., "ok": true|false, "error": ...}, ...]
        top-most signature first
"""
import json
import re
import sys

import dkim

with open(sys.argv[1]) as f:
    records = json.load(f)


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    txt = records.get(name.rstrip("."))
    return txt[0].encode() if txt else None


msg = sys.stdin.buffer.read()
msg = re.sub(rb"\r?\n", b"\r\n", msg)
head = msg.split(b"\r\n\r\n", 1)[0]
sigs = re.findall(rb"(?im)^dkim-signature:((?:.*)(?:\r\n[ \t].*)*)", head)
out = []
for i, value in enumerate(sigs):
    tags = dict(
        (k.strip().decode(), v.strip().decode())
        for k, _, v in (t.partition(b"=") for t in re.sub(rb"\s", b"", value).split(b";"))
        if k.strip()
    )
    d = dkim.DKIM(msg)
    error = ""
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except Exception as e:  # a verifier error is a result to report
        ok, error = False, repr(e)
    out.append({"d": tags.get("d", ""), "s": tags.get("s", ""), "a": tags.get("a", ""), "ok": bool(ok), "error": error})
print(json.dumps(out))
