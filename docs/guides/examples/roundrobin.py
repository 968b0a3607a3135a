#!/usr/bin/env python3
"""A minimal round-robin HTTP load balancer, for trying replicas on one machine.

    python3 roundrobin.py --listen 127.0.0.1:8700 http://127.0.0.1:8701 http://127.0.0.1:8702

Each request goes to the next backend in turn, so a client's `POST /v1/challenge`
and its `POST /v1/attest` land on different replicas. Every request is logged to
stderr as `-> BACKEND METHOD PATH STATUS`. Standard library only; for a demo,
not for production (use your real load balancer there).
"""

import argparse
import itertools
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:8700")
    p.add_argument("backends", nargs="+")
    a = p.parse_args()
    turn = itertools.cycle(a.backends)
    lock = threading.Lock()

    class Proxy(BaseHTTPRequestHandler):
        def forward(self):
            with lock:
                backend = next(turn)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            req = urllib.request.Request(backend + self.path, data=body or None, headers=headers, method=self.command)
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    status, rh, data = r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                status, rh, data = e.code, e.headers, e.read()
            print(f"-> {backend} {self.command} {self.path} {status}", file=sys.stderr, flush=True)
            self.send_response(status)
            for k, v in rh.items():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = forward

        def log_message(self, *args):
            pass

    host, port = a.listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), Proxy)
    print(f"round-robin on http://{a.listen} -> {', '.join(a.backends)}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
