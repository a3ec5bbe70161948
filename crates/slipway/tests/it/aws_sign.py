#!/usr/bin/env python3
"""Sends one SigV4-signed AWS JSON 1.1 (or STS query) request, for tests that need requests
the aws CLI will not make: a tampered body, a wrong secret, a stale date, wrong field types.

usage: aws_sign.py URL KEY_ID SECRET TARGET BODY [--send BODY] [--date-offset SECS]
                   [--service ecs] [--region us-east-1]
TARGET '-' sends an STS query request (BODY is the form). Prints the status, a newline and
the response body.
"""
import argparse, datetime, hashlib, hmac, sys, urllib.error, urllib.parse, urllib.request

p = argparse.ArgumentParser()
for a in ("url", "key", "secret", "target", "body"):
    p.add_argument(a)
p.add_argument("--send")
p.add_argument("--date-offset", type=int, default=0)
p.add_argument("--service", default="ecs")
p.add_argument("--region", default="us-east-1")
a = p.parse_args()

u = urllib.parse.urlparse(a.url)
host = u.netloc
t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=a.date_offset)
amz_date = t.strftime("%Y%m%dT%H%M%SZ")
date = amz_date[:8]
if a.target == "-":
    ctype = "application/x-www-form-urlencoded; charset=utf-8"
    headers = {"content-type": ctype, "host": host, "x-amz-date": amz_date}
else:
    ctype = "application/x-amz-json-1.1"
    headers = {"content-type": ctype, "host": host, "x-amz-date": amz_date, "x-amz-target": a.target}
signed = ";".join(sorted(headers))
canonical = "\n".join([
    "POST", "/", "",
    "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
    signed,
    hashlib.sha256(a.body.encode()).hexdigest(),
])
scope = f"{date}/{a.region}/{a.service}/aws4_request"
sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])

def h(k, m):
    return hmac.new(k, m.encode(), hashlib.sha256).digest()

k = h(h(h(h(("AWS4" + a.secret).encode(), date), a.region), a.service), "aws4_request")
sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
send = (a.send if a.send is not None else a.body).encode()
req = urllib.request.Request(a.url.rstrip("/") + "/", data=send, method="POST")
for k2, v in headers.items():
    if k2 != "host":
        req.add_header(k2, v)
req.add_header("Authorization", f"AWS4-HMAC-SHA256 Credential={a.key}/{scope}, SignedHeaders={signed}, Signature={sig}")
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.write(f"{status}\n{body.decode()}")
