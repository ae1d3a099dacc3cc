"""A fast local Firehose endpoint over TLS for benchmarks (not a test double: it checks nothing
but the request shape). It answers PutRecordBatch with every record accepted and keeps counts of
requests, records and lines in a JSON file after each request.

Usage: firehose_endpoint.py CERT KEY PORT COUNTS_FILE"""
import base64
import http.server
import json
import ssl
import sys
import threading

cert, key, port, counts_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lock = threading.Lock()
counts = {"requests": 0, "records": 0, "lines": 0, "bytes": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        records = json.loads(body)["Records"]
        lines = sum(base64.b64decode(r["Data"]).count(b"\n") for r in records)
        with lock:
            counts["requests"] += 1
            counts["records"] += len(records)
            counts["lines"] += lines
            counts["bytes"] += len(body)
            with open(counts_file, "w") as f:
                json.dump(counts, f)
        out = json.dumps({"FailedPutCount": 0, "Encrypted": False,
                          "RequestResponses": [{"RecordId": str(i)} for i in range(len(records))]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
