#!/usr/bin/python3
"""A small Docker registry token service for the tests (HTTPS on 127.0.0.1).

  token-server.py PORT CERT KEY SIGN_CERT SIGN_KEY SERVICE ISSUER LOG

Issues RS256 JWTs with the signing certificate in the x5c header, which
docker-registry verifies against its `auth: token: rootcertbundle`.
Users: alice/Al1ce-T0ken-pw may pull and push everything; bob/bobpw may pull nothing
(every scope he asks for is granted empty: insufficient_scope); anonymous
callers may pull public/*. An OAuth2 refresh-token POST with refresh_token
"refresh-alice" is alice. When the file LOG.expire-first exists, the first
token issued is already expired (to test renewal). Every request is one JSON
line in LOG (never with a password)."""
import base64, json, ssl, sys, time, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

port, cert, key, sign_cert, sign_key, service, issuer, logf = sys.argv[1:9]
users = {"alice": "Al1ce-T0ken-pw", "bob": "bobpw"}
with open(sign_key, "rb") as f:
    skey = serialization.load_pem_private_key(f.read(), None)
with open(sign_cert, "rb") as f:
    scert = x509.load_pem_x509_certificate(f.read())
x5c = base64.b64encode(scert.public_bytes(serialization.Encoding.DER)).decode()
issued = [0]


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def grant(user, scope):
    out = []
    for s in scope:
        parts = s.split(":")
        if len(parts) != 3 or parts[0] != "repository":
            continue
        name, actions = parts[1], parts[2].split(",")
        if user == "alice":
            out.append({"type": "repository", "name": name, "actions": actions})
        elif user is None and name.startswith("public/"):
            out.append({"type": "repository", "name": name, "actions": [a for a in actions if a == "pull"]})
        else:
            out.append({"type": "repository", "name": name, "actions": []})
    return out


def token(user, scope):
    now = int(time.time())
    issued[0] += 1
    exp = now + 300
    if issued[0] == 1 and os.path.exists(logf + ".expire-first"):
        exp = now - 300  # docker-registry allows 60 s of clock skew
    header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
    claims = {"iss": issuer, "sub": user or "", "aud": service, "exp": exp, "nbf": now - 60, "iat": now,
              "jti": "%d-%d" % (now, issued[0]), "access": grant(user, scope)}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = skey.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64(sig), exp - now


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def record(self, **kw):
        with open(logf, "a") as f:
            f.write(json.dumps(kw) + "\n")

    def answer(self, user, scope, method):
        tok, ttl = token(user, scope)
        self.record(method=method, user=user, scope=scope, auth=self.headers.get("Authorization", "")[:6])
        body = json.dumps({"token": tok, "access_token": tok, "expires_in": ttl,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def deny(self, method):
        self.record(method=method, denied=True)
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        q = parse_qs(urlparse(self.path).query)
        user = None
        a = self.headers.get("Authorization", "")
        if a.startswith("Basic "):
            u, _, p = base64.b64decode(a[6:]).decode().partition(":")
            if users.get(u) != p:
                return self.deny("GET")
            user = u
        self.answer(user, q.get("scope", []), "GET")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(n).decode())
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != ["refresh-alice"]:
            return self.deny("POST")
        self.answer("alice", form.get("scope", []), "POST")


srv = ThreadingHTTPServer(("127.0.0.1", int(port)), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
