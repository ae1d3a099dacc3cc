"""Abuses the agent's HTTP endpoint as a careless or hostile local client does.

usage: abuse.py HOST PORT MODE SECONDS
  hold   opens 1000 connections that send an unfinished request head, plus one POST with a
         10 MB body and one with a 1 MB header line, then waits up to SECONDS for the agent to
         close them; prints a JSON report.
  flood  for SECONDS keeps opening connections with unfinished heads (reopening those the agent
         closes), to run the agent out of descriptors; prints a JSON report.
"""

import json
import resource
import select
import socket
import sys
import threading
import time

host, port, mode, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

HEAD = b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Unfinished: "


def unfinished():
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(HEAD)
    s.setblocking(False)
    return s


def closed_by_peer(s):
    try:
        data = s.recv(65536)
        return data == b"" or not data.startswith(b"HTTP/1.1 2")
    except BlockingIOError:
        return False
    except OSError:
        return True


def big_body(report):
    try:
        s = socket.create_connection((host, port), timeout=20)
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: agent\r\nContent-Length: 10485760\r\n\r\n")
        chunk = b"b" * 65536
        sent = 0
        while sent < 10485760:
            s.sendall(chunk)
            sent += len(chunk)
        report["body_sent"] = sent
        s.close()
    except OSError as e:
        report["body_refused"] = str(e)


def big_header(report):
    try:
        s = socket.create_connection((host, port), timeout=20)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Long: " + b"h" * (1 << 20) + b"\r\n\r\n")
        report["header_answer"] = s.recv(64).decode("latin-1")
        s.close()
    except OSError as e:
        report["header_refused"] = str(e)


report = {}
if mode == "hold":
    socks, failed = [], 0
    for _ in range(1000):
        try:
            socks.append(unfinished())
        except OSError:
            failed += 1
    threads = [threading.Thread(target=f, args=(report,)) for f in (big_body, big_header)]
    for t in threads:
        t.start()
    report["opened"] = len(socks)
    report["connect_failed"] = failed
    start = time.monotonic()
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    closed_at = []
    while by_fd and time.monotonic() - start < seconds:
        for fd, _ in poller.poll(200):
            if fd in by_fd and closed_by_peer(by_fd[fd]):
                poller.unregister(fd)
                del by_fd[fd]
                closed_at.append(time.monotonic() - start)
    for t in threads:
        t.join(30)
    report["still_open"] = len(by_fd)
    report["last_closed_after_s"] = max(closed_at) if closed_at else None
elif mode == "flood":
    socks, opened, failed = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        kept = []
        for s in socks:
            if closed_by_peer(s):
                s.close()
            else:
                kept.append(s)
        socks = kept
        try:
            socks.append(unfinished())
            opened += 1
        except OSError:
            failed += 1
            time.sleep(0.01)
    report["opened"] = opened
    report["connect_failed"] = failed
    report["held_at_end"] = len(socks)
print(json.dumps(report))
