#!/usr/bin/env python3
"""A Standard Webhooks receiver for the batch-event black-box checks
(scripts/batchevents/pending.sh). Verifies each delivery's signature as
the OpenAI SDKs' webhooks.unwrap does, logs it as a JSON line, and answers
as the file MODE says: "up" 200, "down" 503, "hang" nothing until MODE
changes (a delivery left in flight).
Usage: receiver.py PORT SECRET MODEFILE LOGFILE"""
import base64, hashlib, hmac, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, secret, modefile, logfile = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()


def mode():
    try:
        with open(modefile) as f:
            return f.read().strip()
    except OSError:
        return "up"


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        wid, ts = self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", "")
        want = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
        sigs = [s.split(",", 1)[-1] for s in self.headers.get("webhook-signature", "").split()]
        ok = any(hmac.compare_digest(s, want) for s in sigs) and abs(time.time() - int(ts or 0)) <= 300
        m = mode()
        ev = json.loads(body) if ok else {}
        rec = {"t": round(time.time(), 1), "path": self.path, "webhook_id": wid, "verified": ok,
               "type": ev.get("type"), "batch": ev.get("data", {}).get("id"), "mode": m}
        with open(logfile, "a") as f:
            f.write(json.dumps(rec) + "\n")
        while m == "hang":
            time.sleep(0.2)
            m = mode()
        try:
            self.send_response(503 if m == "down" else 200)
            self.end_headers()
        except OSError:
            pass


ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
