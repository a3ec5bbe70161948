#!/usr/bin/env python3
"""Bounded load on Slipway's AWS API: N concurrent processes, each with one keep-alive
connection, sending SigV4-signed JSON 1.1 requests for DURATION seconds. Prints p50/p99/max
latency (ms) and requests per second as JSON.

usage: aws_load.py URL KEY SECRET TARGET BODY_TEMPLATE CONCURRENCY DURATION [RATE]
BODY_TEMPLATE may contain {n} (a per-request counter) and {svc10} (10 service names svc-K).

Without RATE the run is closed-loop: each client sends its next request as soon as the
previous one is answered (so latency = CONCURRENCY / throughput once the server saturates).
With RATE (requests per second, all clients together) the run is open-loop at a fixed rate:
client i sends on its own schedule (RATE / CONCURRENCY per second, clients staggered), and
each latency is measured from the request's scheduled time, so a client that falls behind
counts the wait (no coordinated omission). "late" counts requests sent more than 1 ms late.
"""
import datetime, hashlib, hmac, http.client, json, multiprocessing, random, sys, time, urllib.parse

url, key, secret, target, template, conc, duration = sys.argv[1:8]
conc, duration = int(conc), float(duration)
rate = float(sys.argv[8]) if len(sys.argv) > 8 else None
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


def worker(i, out, start):
    conn = http.client.HTTPConnection(host, timeout=30)
    lat, errors, n, late = [], 0, 0, 0
    interval = conc / rate if rate else 0.0
    # Open loop: client i's k-th request is due at start + (i + k * conc) / rate.
    due = start + (i / rate if rate else 0.0)
    while time.perf_counter() < start:
        time.sleep(0.001)
    end = start + duration
    while True:
        now = time.perf_counter()
        if rate:
            if due >= end:
                break
            if due > now:
                time.sleep(due - now)
            elif now - due > 0.001:
                late += 1
        elif now >= end:
            break
        n += 1
        svc10 = json.dumps([f"svc-{random.randrange(100)}" for _ in range(10)])
        body = template.replace("{n}", f"{i}-{n}").replace("{svc10}", svc10).encode()
        headers = sign(body)
        t0 = due if rate else time.perf_counter()
        conn.request("POST", "/", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        lat.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            errors += 1
        due += interval
    out.put((lat, errors, late))


if __name__ == "__main__":
    q = multiprocessing.Queue()
    # Every client starts at the same instant, after all processes are up.
    start = time.perf_counter() + 1.0
    ps = [multiprocessing.Process(target=worker, args=(i, q, start)) for i in range(conc)]
    for p in ps:
        p.start()
    lat, errors, late = [], 0, 0
    for _ in ps:
        l, e, lt = q.get()
        lat += l
        errors += e
        late += lt
    for p in ps:
        p.join()
    wall = max(time.perf_counter() - start, 1e-9)
    lat.sort()
    pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2)
    out = {"mode": f"fixed rate {rate:g}/s" if rate else "closed loop", "requests": len(lat),
           "errors": errors, "rps": round(len(lat) / wall), "p50_ms": pct(0.50),
           "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 2)}
    if rate:
        out["late"] = late
    print(json.dumps(out))
