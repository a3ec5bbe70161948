#!/usr/bin/env python3
"""Bounded load on Slipway's AWS API: N concurrent processes, each with one keep-alive
connection, sending SigV4-signed JSON 1.1 requests for DURATION seconds. Prints p50/p99/max
latency (ms) and requests per second as JSON.

usage: aws_load.py URL KEY SECRET TARGET BODY_TEMPLATE CONCURRENCY DURATION
BODY_TEMPLATE may contain {n} (a per-request counter) and {svc10} (10 service names svc-K).
"""
import datetime, hashlib, hmac, http.client, json, multiprocessing, random, sys, time, urllib.parse

url, key, secret, target, template, conc, duration = sys.argv[1:8]
conc, duration = int(conc), float(duration)
host = urllib.parse.urlparse(url).netloc


def sign(body):
    t = datetime.datetime.now(datetime.timezone.utc)
    amz = t.strftime("%Y%m%dT%H%M%SZ")
    h = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": amz, "x-amz-target": target}
    signed = ";".join(sorted(h))
    creq = "\n".join(["POST", "/", "", "".join(f"{k}:{h[k]}\n" for k in sorted(h)), signed,
                      hashlib.sha256(body).hexdigest()])
    scope = f"{amz[:8]}/us-east-1/ecs/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for m in (amz[:8], "us-east-1", "ecs", "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    del h["host"]
    return h


def worker(i, out):
    conn = http.client.HTTPConnection(host, timeout=30)
    lat, errors, n = [], 0, 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        n += 1
        svc10 = json.dumps([f"svc-{random.randrange(100)}" for _ in range(10)])
        body = template.replace("{n}", f"{i}-{n}").replace("{svc10}", svc10).encode()
        headers = sign(body)
        t0 = time.perf_counter()
        conn.request("POST", "/", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        lat.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            errors += 1
    out.put((lat, errors))


if __name__ == "__main__":
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=worker, args=(i, q)) for i in range(conc)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    lat, errors = [], 0
    for _ in ps:
        l, e = q.get()
        lat += l
        errors += e
    for p in ps:
        p.join()
    wall = time.monotonic() - t0
    lat.sort()
    pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2)
    print(json.dumps({"requests": len(lat), "errors": errors, "rps": round(len(lat) / wall),
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 2)}))
