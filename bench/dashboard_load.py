"""What an open dashboard asks of a hub, as a process of its own (bench/test_bench_dashboard.py):
the SSE feed a tab keeps open (by default the overview's, `/api/events?interval_s=1&jobs=off`:
stats, workers and pauses; another path as the second argument, e.g. the whole job feed) and a
Prometheus scrape of `/metrics` every second. Runs until SIGTERM, then prints what it read as JSON:
events, bytes, scrapes. Standard library only, so it costs the load process nothing.

Run: python bench/dashboard_load.py HTTP_PORT [FEED_PATH]; EMPFAST_BENCH_DASHBOARD_PARTS=feed (or
scrape) runs one part only, to tell their costs apart.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import threading
import time

FEED = "/api/events?interval_s=1&jobs=off"  # what the dashboard's overview keeps open
stop = threading.Event()
connected = threading.Event()  # the feed answered: a dashboard is open before the work it watches
counts = {"events": 0, "sse_bytes": 0, "scrapes": 0, "scrape_failures": 0}


def read_feed(port: int, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={"Accept": "text/event-stream"})
    answer = connection.getresponse()
    assert answer.status == 200, answer.status
    connected.set()
    while not stop.is_set():
        data = answer.read1(1 << 16)  # whole chunks: a browser reads them so too
        if not data:
            return
        counts["sse_bytes"] += len(data)
        counts["events"] += data.count(b"\n\n")


def scrape_every_second(port: int) -> None:
    while not stop.wait(1.0):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/metrics")
            answer = connection.getresponse()
            answer.read()
            counts["scrapes" if answer.status == 200 else "scrape_failures"] += 1
            connection.close()
        except OSError:
            counts["scrape_failures"] += 1


def main() -> None:
    port = int(sys.argv[1])
    path = sys.argv[2] if len(sys.argv) > 2 else FEED
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parts = os.environ.get("EMPFAST_BENCH_DASHBOARD_PARTS", "feed,scrape").split(",")
    if "feed" in parts:
        threading.Thread(target=read_feed, args=(port, path), daemon=True).start()
        connected.wait(10)
    if "scrape" in parts:
        threading.Thread(target=scrape_every_second, args=(port,), daemon=True).start()
    print("ready", flush=True)
    while not stop.wait(0.1):
        pass
    time.sleep(0.05)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
