#!/usr/bin/python3
"""A misbehaving HTTPS reverse proxy in front of a test registry (127.0.0.1 only).

  proxy.py PORT ALT_PORT CERT KEY CA UPSTREAM MODE_FILE LOG [UPSTREAM_AUTH]

Listens on PORT and ALT_PORT (the "other origin" redirects point to) and
forwards to UPSTREAM (https://127.0.0.1:N, trusted through CA). What it does
to requests is read from MODE_FILE before every request, so a test switches
behaviour without a restart:
  pass           forward untouched
  redirect       GET .../blobs/... on PORT: 307 to the same path on ALT_PORT;
                 ALT_PORT fetches with UPSTREAM_AUTH (user:pass), never the client's
  redirect-loop  GET .../blobs/... on PORT: 307 to the same URL, forever
  redirect-http  GET .../blobs/... on PORT: 307 to plain http:// on ALT_PORT
  429:N          the first N requests: 429 with Retry-After: 1
  drop           a blob GET without Range: headers for the whole body, half of it, then the connection is cut
  chunked        blob bodies are sent chunked, without Content-Length
  flip           one byte in the middle of every layer-sized blob (> 4 KiB) is flipped
  flip-manifest  one byte of every manifest body is flipped (Docker-Content-Digest left as it was)
  big-manifest   manifest bodies are padded with 9 MiB of spaces
  throttle:BPS   bodies are sent at about BPS bytes per second (all connections together)
Every request is one JSON line in LOG: port, method, path, range, whether an
Authorization header came, status."""
import base64, http.client, json, socket, ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

port, alt_port, cert, key, ca, upstream, mode_file, logf = sys.argv[1:9]
upstream_auth = sys.argv[9] if len(sys.argv) > 9 else ""
up = urlparse(upstream)
lock = threading.Lock()
state = {"mode": None, "count": 0}
bucket = {"next": 0.0}
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


def mode():
    try:
        with open(mode_file) as f:
            m = f.read().strip()
    except OSError:
        m = "pass"
    with lock:
        if m != state["mode"]:
            state["mode"], state["count"] = m, 0
        state["count"] += 1
        return m, state["count"]


def throttle(n, bps):
    """Waits for this chunk's slot: all connections together get bps bytes per second."""
    with lock:
        now = time.monotonic()
        start = max(now, bucket["next"])
        bucket["next"] = start + n / bps
        wait = bucket["next"] - now
    if wait > 0:
        time.sleep(wait)


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def record(self, status):
        with open(logf, "a") as f:
            f.write(json.dumps({"port": self.server.server_address[1], "method": self.command, "path": self.path,
                                "range": self.headers.get("Range", ""),
                                "auth": "Authorization" in self.headers, "status": status}) + "\n")

    def simple(self, status, headers=None):
        self.record(status)
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def handle_any(self):
        m, count = mode()
        alt = self.server.server_address[1] == int(alt_port)
        blob = "/blobs/sha256:" in self.path
        if m.startswith("429:") and count <= int(m[4:]):
            return self.simple(429, {"Retry-After": "1"})
        if m == "redirect-loop" and blob and self.command == "GET":
            return self.simple(307, {"Location": self.path})
        if m == "redirect-http" and blob and not alt and self.command == "GET":
            return self.simple(307, {"Location": "http://127.0.0.1:%s%s" % (alt_port, self.path)})
        if m == "redirect" and blob and not alt and self.command == "GET":
            return self.simple(307, {"Location": "https://127.0.0.1:%s%s" % (alt_port, self.path)})
        ctx = ssl.create_default_context(cafile=ca)
        conn = http.client.HTTPSConnection(up.hostname, up.port, context=ctx, timeout=60)
        # Header by header: a client may send several Accept lines.
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "%s:%d" % (up.hostname, up.port))
        for k, v in self.headers.items():
            if k.lower() in HOP or k.lower() == "host" or (alt and k.lower() == "authorization"):
                continue
            conn.putheader(k, v)
        if alt and upstream_auth:
            conn.putheader("Authorization", "Basic " + base64.b64encode(upstream_auth.encode()).decode())
        conn.endheaders()
        r = conn.getresponse()
        self.record(r.status)
        length = r.getheader("Content-Length")
        body_len = int(length) if length is not None else None
        manifest = "/manifests/" in self.path and self.command == "GET" and r.status == 200
        if manifest and m in ("flip-manifest", "big-manifest"):
            body = bytearray(r.read())
            if m == "flip-manifest":
                i = body.find(b'"digest"')
                body[i + 20] ^= 0x01  # inside the config digest's hex
            else:
                body += b" " * (9 << 20)
            body_len = len(body)
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(body_len))
            self.end_headers()
            self.wfile.write(bytes(body))
            conn.close()
            return
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in HOP or k.lower() == "content-length":
                continue
            self.send_header(k, v)
        chunked = m == "chunked" and blob and self.command == "GET"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif body_len is not None:
            self.send_header("Content-Length", str(body_len))
        self.end_headers()
        if self.command == "HEAD":
            conn.close()
            return
        drop_at = body_len // 2 if (m == "drop" and blob and r.status == 200 and body_len and body_len > 4096
                                    and not self.headers.get("Range")) else None
        flip_at = body_len // 2 if (m == "flip" and blob and r.status in (200, 206) and body_len and body_len > 4096) else None
        bps = int(m[9:]) if m.startswith("throttle:") else 0
        sent = 0
        while True:
            chunk = r.read(65536)
            if not chunk:
                break
            if flip_at is not None and sent <= flip_at < sent + len(chunk):
                b = bytearray(chunk)
                b[flip_at - sent] ^= 0x01
                chunk = bytes(b)
            if drop_at is not None and sent + len(chunk) > drop_at:
                self.wfile.write(chunk[:drop_at - sent])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                conn.close()
                return
            if bps:
                throttle(len(chunk), bps)
            if chunked:
                self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            else:
                self.wfile.write(chunk)
            sent += len(chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        conn.close()


def serve(p):
    srv = ThreadingHTTPServer(("127.0.0.1", int(p)), H)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


threading.Thread(target=serve, args=(alt_port,), daemon=True).start()
serve(port)
