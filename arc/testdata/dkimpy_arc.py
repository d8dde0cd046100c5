#!/usr/bin/python3
"""Drive dkimpy's ARC code (Debian python3-dkim, python3-authres) for
tollgate's interop tests, with DNS served from a JSON file
{"sel._domainkey.example.org": ["v=DKIM1; ...", ...]} instead of the network.

  dkimpy_arc.py verify DNS.json < message
      prints {"cv": "pass|fail|none", "reason": "...", "ams_valid": {"1": true, ...}}
  dkimpy_arc.py seal DNS.json KEY.pem DOMAIN SELECTOR SRVID [CV] < message
      acts as one ARC hop: verifies the chain (or takes the verdict CV,
      for a hop that changed the message after verifying it), puts its
      own Authentication-Results on top (arc=<cv>), seals, and prints the
      message with the new set on top.

Messages are read and written with CRLF line endings.
"""
import json
import sys

import dkim


def load_dns(path):
    with open(path) as f:
        records = json.load(f)
    records = {k.lower().rstrip('.'): v for k, v in records.items()}

    def dnsfunc(name, timeout=5):
        txt = records.get(name.decode('ascii').lower().rstrip('.'))
        if not txt:
            return None
        # dkimpy takes the first record; the tests publish one
        return txt[0].encode('ascii')
    return dnsfunc


def read_message():
    msg = sys.stdin.buffer.read()
    return msg.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')


def verify(dnsfunc, msg):
    cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    cv = cv.decode() if cv else ''
    return {
        'cv': cv,
        'reason': reason,
        'ams_valid': {str(r['instance']): bool(r['ams-valid']) for r in results},
        'as_valid': {str(r['instance']): bool(r['as-valid']) for r in results},
    }


def main():
    mode, dnspath = sys.argv[1], sys.argv[2]
    dnsfunc = load_dns(dnspath)
    msg = read_message()
    if mode == 'verify':
        print(json.dumps(verify(dnsfunc, msg)))
        return
    if mode != 'seal':
        sys.exit('unknown mode ' + mode)
    keypath, domain, selector, srvid = sys.argv[3:7]
    with open(keypath, 'rb') as f:
        key = f.read()
    if len(sys.argv) > 7:
        cv = sys.argv[7]
    else:
        cv = verify(dnsfunc, msg)['cv'] or 'fail'
    ar = ('Authentication-Results: %s; arc=%s\r\n' % (srvid, cv)).encode()
    msg = ar + msg
    new = dkim.arc_sign(msg, selector.encode(), domain.encode(), key,
                        srvid.encode())
    if not new:
        sys.exit('dkimpy did not seal')
    sys.stdout.buffer.write(b''.join(new) + msg)


if __name__ == '__main__':
    main()
