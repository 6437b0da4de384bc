#!/usr/bin/env python3
"""A webhook receiver that checks dynedge's (ApertoDNS Layer 3) signatures.

    examples/webhook-receiver.py --port 9443 --cert cert.pem --key key.pem \
        --secret "$WEBHOOK_SECRET" --log deliveries.jsonl [--fail-first 1]

Listens on 127.0.0.1 with HTTPS. For every POST it verifies
X-ApertoDNS-Signature == "sha256=" + hex(HMAC-SHA256(secret, "{X-ApertoDNS-Timestamp}.{body}"))
and a timestamp within 5 minutes (docs/dialects.md, Webhook delivery), appends one JSON line to --log, and answers
200 (or 401 for a bad signature). --fail-first N answers the first N deliveries with 500, to
watch the gateway retry.
"""
import argparse
import hashlib
import hmac
import http.server
import json
import ssl
import time

args = None
seen = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        global seen
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        ts = self.headers.get("x-apertodns-timestamp", "")
        sig = self.headers.get("x-apertodns-signature", "")
        mac = hmac.new(args.secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
        fresh = ts.isdigit() and abs(time.time() - int(ts)) <= 300
        valid = fresh and hmac.compare_digest("sha256=" + mac.hexdigest(), sig)
        seen += 1
        status = 500 if seen <= args.fail_first else (200 if valid else 401)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        with open(args.log, "a") as f:
            f.write(json.dumps({
                "n": seen, "status": status, "valid": valid, "path": self.path,
                "event": self.headers.get("x-apertodns-event"),
                "delivery": self.headers.get("x-apertodns-delivery-id"),
                "user_agent": self.headers.get("user-agent"),
                "body": payload,
            }) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    args = p.parse_args()
    server = http.server.HTTPServer(("127.0.0.1", args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
