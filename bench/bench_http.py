"""CPU per POST of the Instagram channel against bare clients, the same fake, one connection.

    python bench/bench_http.py [--calls 2000] [--repeat 3] [CLIENT ...]

Clients: ``channel`` (``InstagramChannel.send``: token, payload, tenacity, the HTTP sender,
the answer classified), ``sender`` (``HttpSender.post`` alone), ``requests`` (a bare
``requests.Session().post``, what ``bench_engine.py send`` calls its bare client) and
``urllib3`` (a bare ``HTTPConnectionPool.urlopen``, requests' own transport: the floor).

The fake Graph API (tests/fakes/graph_api.py) runs in a child process, so the figure is the
client thread's own CPU (``time.thread_time``), not the server's; the wall rate is printed
too, but on a shared machine the CPU figure is the one to compare. Each figure is the median
of ``--repeat`` rounds of ``--calls`` calls, after 50 calls of warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

IG_USER = "17841000000000001"
PATH = f"/v21.0/{IG_USER}/messages"
TOKEN_ENV = "BENCH_HTTP_TOKEN"


def payload(i: int) -> dict:
    return {"recipient": {"id": f"r{i}"}, "message": {"text": "hi"}}


def client(name: str, base: str, port: int) -> Callable[[int], None]:
    """One call of the named client: POST a message, read and parse the answer."""
    headers = {"Authorization": "Bearer tok"}
    if name == "channel":
        from followup_cli.channels.base import OutgoingMessage
        from followup_cli.channels.instagram import InstagramChannel

        ch = InstagramChannel(base, "v21.0", max_retries=0, env={TOKEN_ENV: "tok-bench-1234"})

        def call(i: int) -> None:
            msg = OutgoingMessage("a", f"r{i}", "hi", ig_user_id=IG_USER, token_env=TOKEN_ENV)
            assert ch.send(msg).ok

        return call
    if name == "sender":
        from followup_cli.channels.http import HttpSender

        sender = HttpSender(5, 10, 0, 60)

        def call(i: int) -> None:
            assert sender.post(base + PATH, headers, payload(i))[0].kind == "ok"

        return call
    if name == "requests":
        import requests

        s = requests.Session()

        def call(i: int) -> None:
            assert s.post(base + PATH, json=payload(i), headers=headers).json()

        return call
    if name == "urllib3":
        import urllib3

        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
        hdrs = {**headers, "Content-Type": "application/json"}

        def call(i: int) -> None:
            body = json.dumps(payload(i)).encode()
            assert json.loads(pool.urlopen("POST", PATH, body=body, headers=hdrs).data)

        return call
    raise SystemExit(f"unknown client {name!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clients", nargs="*", default=["urllib3", "requests", "sender", "channel"])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.graph_api", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"},
    )
    base = f"http://127.0.0.1:{port}"
    out: dict[str, tuple[float, float]] = {}
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        for name in args.clients:
            rounds = []
            for _ in range(args.repeat):
                call = client(name, base, port)
                for i in range(50):
                    call(i)
                cpu, wall = time.thread_time(), time.perf_counter()
                for i in range(args.calls):
                    call(i)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                rounds.append((cpu / args.calls * 1e6, args.calls / wall))
            us = statistics.median(r[0] for r in rounds)
            rate = statistics.median(r[1] for r in rounds)
            out[name] = (us, rate)
            print(
                f"{name:9s} {us:6.0f} us CPU a call (rounds {[round(r[0]) for r in rounds]}), "
                f"{rate:5.0f} calls/s",
                flush=True,
            )
    finally:
        fake.terminate()
        fake.wait()
    return out


if __name__ == "__main__":
    main()
