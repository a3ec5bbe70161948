"""N concurrent server-sent-event clients of one URL (loopback only), for bench/console.sh.

Usage: sse_clients.py HOST PORT PATH COOKIE N READY_FILE
Opens N connections, writes READY_FILE once every stream answered 200, then counts
`event: change` lines per client until SIGTERM, and prints `clients=N changes_min=.. max=..`.
"""
import asyncio
import signal
import sys

host, port, path, cookie, n, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
counts = [0] * n


async def client(i, opened):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise SystemExit(f"client {i}: {status!r}")
    opened.release()
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"event: change"):
            counts[i] += 1


async def main():
    opened = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(client(i, opened)) for i in range(n)]
    for _ in range(n):
        await opened.acquire()
    open(ready, "w").write("ready\n")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for t in tasks:
        t.cancel()
    print(f"clients={n} changes_min={min(counts)} changes_max={max(counts)}", flush=True)


asyncio.run(main())
