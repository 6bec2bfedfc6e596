#!/usr/bin/env python3
"""Latency of the mail path (issue 13): the time from the client's final dot to the server's
reply, for 10 KiB messages sent at a steady rate over several sessions (connections reused).

    scripts/bench-latency.py HOST:PORT [--rate 500] [--seconds 10] [--sessions 8] [--size 10240]

Prints the rate reached and p50, p90, p99 and max of the dot-to-reply time. Run it against a
gateway whose acme.example contract has alice (scripts/bench-standard.sh's configuration), at
about half the rate the gateway reaches with the same message size.
"""
import argparse
import socket
import threading
import time


def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


def session(addr, body, interval, until, out):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO latency.test\r\n")
    reply(f)
    next_at = time.monotonic()
    while time.monotonic() < until:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        s.sendall(b"MAIL FROM:<bench@remote.test>\r\n")
        assert reply(f) == 250
        s.sendall(b"RCPT TO:<alice@acme.example>\r\n")
        assert reply(f) == 250
        s.sendall(b"DATA\r\n")
        assert reply(f) == 354
        s.sendall(body)
        t = time.monotonic()
        s.sendall(b".\r\n")
        code = reply(f)
        out.append((time.monotonic() - t, code))
    s.sendall(b"QUIT\r\n")
    s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--size", type=int, default=10240)
    a = p.parse_args()
    line = b"x" * 76 + b"\r\n"
    body = b"From: bench@remote.test\r\nTo: alice@acme.example\r\nSubject: latency\r\n\r\n"
    body += line * max(1, (a.size - len(body)) // len(line))
    out = []
    until = time.monotonic() + a.seconds
    threads = [
        threading.Thread(target=session, args=(a.addr, body, a.sessions / a.rate, until, out))
        for _ in range(a.sessions)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    lat = sorted(x for x, _ in out)
    bad = sum(1 for _, c in out if c != 250)
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000
    print(f"{len(out)} messages in {took:.1f} s ({len(out) / took:.0f} msg/s, asked {a.rate:.0f}), "
          f"{bad} not 250; dot to reply: p50 {q(0.50):.1f} ms, p90 {q(0.90):.1f} ms, "
          f"p99 {q(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
