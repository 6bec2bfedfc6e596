#!/usr/bin/env python3
"""Figures for the hostile inputs of issue 8: peak memory (VmHWM of the gateway process) and
seconds until the reply, per input, each on a fresh gateway, for the binaries given.

    scripts/bench-hostile.py target/release/mxshield [/path/to/other/mxshield ...]
    ONLY=RFC scripts/bench-hostile.py ...     # only the inputs whose name contains RFC

Needs 7z (p7zip-full) for the 7z bomb. Talks only to 127.0.0.1. Prints one table row per
input and binary; nothing is asserted (the regression tests do that).
"""

import base64
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

EICAR_FREE_FROM = "x@remote.test"
RCPT = "alice@acme.example"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vmhwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Sink:
    """A customer server that accepts and discards everything."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            self.talk(c)
        except OSError:
            pass  # the gateway under test was stopped mid-session
        c.close()

    def talk(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 sink\r\n")
        data = False
        for line in f:
            if data:
                if line == b".\r\n":
                    data = False
                    c.sendall(b"250 ok\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"DATA":
                data = True
                c.sendall(b"354 go\r\n")
            elif verb == b"QUIT":
                c.sendall(b"221 bye\r\n")
                break
            elif verb == b"EHLO":
                c.sendall(b"250-sink\r\n250 8BITMIME\r\n")
            else:
                c.sendall(b"250 ok\r\n")


class Gateway:
    def __init__(self, binary, sink_port):
        self.dir = tempfile.mkdtemp(prefix="mxshield-hostile-")
        self.port = free_port()
        with open(os.path.join(self.dir, "m.toml"), "w") as f:
            f.write(f'data_dir = "data"\n[smtp]\nlisten = ["127.0.0.1:{self.port}"]\nhostname = "mx.test"\n'
                    f'data_timeout = "10m"\ncommand_timeout = "10m"\n')
        with open(os.path.join(self.dir, "c.toml"), "w") as f:
            f.write('[[contract]]\nid = "acme"\ncustomer = "ACME"\naccounts_limit = 5\nstarts = "2026-01-01"\n'
                    f'[[contract.domain]]\nname = "acme.example"\nreceiving_servers = ["127.0.0.1:{sink_port}"]\n'
                    'accounts = ["alice"]\n')
        subprocess.run([binary, "--config", "m.toml", "contracts", "apply", "c.toml"], cwd=self.dir,
                       check=True, capture_output=True)
        self.proc = subprocess.Popen([binary, "--config", "m.toml", "serve"], cwd=self.dir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.025)
        raise RuntimeError("gateway did not start")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def send(port, raw, timeout=900):
    """Sends one message; returns the reply text to the final dot."""
    s = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
    s.ehlo("bench.test")
    try:
        s.sendmail(EICAR_FREE_FROM, [RCPT], raw)
        reply = "250"
    except smtplib.SMTPResponseException as e:
        reply = f"{e.smtp_code} {e.smtp_error.decode(errors='replace')[:60]}"
    except smtplib.SMTPDataError as e:
        reply = f"{e.smtp_code}"
    try:
        s.quit()
    except Exception:
        pass
    return reply


def attachment_message(name, data):
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"From: x@remote.test\r\nTo: alice@acme.example\r\nSubject: " + name.encode() +
            b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: application/octet-stream; name=\"" + name.encode() +
            b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--b--\r\n")


def vint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v == 0:
            return out + bytes([b])
        out += bytes([b | 0x80])


def inputs(work):
    """(name, list of messages sent at once)"""
    bomb = os.path.join(work, "zeros.7z")
    if not os.path.exists(bomb):
        subprocess.run(f"head -c 2000000000 /dev/zero | 7z a -bd -bso0 -si {bomb}", shell=True, check=True)
    yield "7z bomb: 2 GB of zeros, LZMA2 (291 KB)", [attachment_message("zeros.7z", open(bomb, "rb").read())]
    extra = 35_000_000
    body = vint(2) + vint(1) + vint(extra) + vint(0) + vint(5) + vint(0) + vint(0) + vint(0) + vint(5) + b"a.txt"
    body += b"\0" * extra
    rar = b"Rar!\x1a\x07\x01\x00" + zlib.crc32(body).to_bytes(4, "little") + vint(len(body)) + body
    yield "RAR5 with a 35 MB extra area", [attachment_message("x.rar", rar)]
    uu = b"begin 644 a\r\n#86)C\r\n`\r\nend\r\n" * 1_300_000
    yield "1,300,000 uuencoded files (3 bytes each) in a text part", [
        b"From: x@remote.test\r\nTo: alice@acme.example\r\nSubject: uu\r\n\r\n" + uu]
    params = b"".join(b";\r\n p%d=v" % i for i in range(80_000))
    yield "Content-Type of 80,000 distinct parameters (1 MB)", [
        b"Subject: params\r\nContent-Type: text/plain" + params + b"\r\n\r\nhi\r\n"]
    sections = b"".join(b";\r\n p%d*0*=utf-8''x" % i for i in range(50_000))
    yield "50,000 parameters in RFC 2231 sections (1 MB)", [
        b"Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: application/octet-stream" + sections + b"\r\n\r\nhi\r\n--b--\r\n"]
    yield "Subject of 200,000 unterminated encoded words (1.4 MB)", [
        b"Subject: " + b"=?x?Q? " * 200_000 + b"\r\n\r\nhi\r\n"]
    yield "one unterminated 45 MB header line", [b"Subject: " + b"a" * 45_000_000 + b"\r\n\r\nhi\r\n"]
    big = os.urandom(33_000_000)
    yield "16 concurrent 45 MB messages (33 MB random attachment)", [attachment_message("big.bin", big)] * 16


def main():
    binaries = sys.argv[1:] or ["target/release/mxshield"]
    work = tempfile.mkdtemp(prefix="mxshield-hostile-inputs-")
    sink = Sink()
    print(f"{'input':58} {'binary':28} {'reply':26} {'seconds':>8} {'peak RSS':>10}")
    only = os.environ.get("ONLY", "")
    for name, messages in inputs(work):
        if only not in name:
            continue
        for binary in binaries:
            gw = Gateway(binary, sink.port)
            time.sleep(0.3)
            started = time.time()
            replies = []
            threads = [threading.Thread(target=lambda m=m: replies.append(send(gw.port, m))) for m in messages]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.time() - started
            peak = vmhwm_kib(gw.proc.pid)
            gw.close()
            reply = ",".join(sorted(set(r[:24] for r in replies)))
            print(f"{name[:58]:58} {binary[-28:]:28} {reply:26} {took:8.1f} {peak / 1024:8.0f} MiB", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
