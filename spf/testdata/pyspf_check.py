"""Second opinion for tollgate's SPF tests: pyspf (Debian python3-spf).

Reads a JSON list of {"i": ip, "s": sender, "h": helo} on stdin and writes
the list of pyspf's results (pass, fail, softfail, neutral, none, temperror,
permerror) as JSON. DNS is whatever /etc/resolv.conf names: the test runs
this in a private mount namespace whose resolv.conf points at its server.
"""
import json
import sys

import spf

cases = json.load(sys.stdin)
out = []
for c in cases:
    result, _explanation = spf.check2(i=c["i"], s=c["s"], h=c["h"], timeout=10)
    out.append(result)
json.dump(out, sys.stdout)
