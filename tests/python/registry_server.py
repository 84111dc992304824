"""A real OCI registry for the pull and push tests: Debian's `docker-registry` (the reference
distribution registry) on loopback, optionally behind a Bearer token service, and a TCP proxy
that slows the registry's answers and records the requests, so a test can interrupt a pull
half-way and see what a resumed pull asks for."""

import base64
import datetime
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import free_port, stop_process, wait_for

REGISTRY_BINARY = os.environ.get("MODELD_REGISTRY", "/usr/bin/docker-registry")


class Registry:
    """`docker-registry serve` with filesystem storage under `root`. With `token_realm`, every
    request needs a token from that realm, signed by `signing_certificate`."""

    def __init__(self, root, port=None, token=None):
        self.root = root
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = os.path.join(root, "storage")
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": self.storage}, "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        if token is not None:
            config["auth"] = {"token": {
                "realm": token.realm, "service": token.service, "issuer": token.issuer,
                "rootcertbundle": token.certificate_path,
            }}
        self.config_path = os.path.join(root, f"registry-{self.port}.yml")
        with open(self.config_path, "w") as file:
            json.dump(config, file)  # YAML is a superset of JSON
        self.process = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.root, f"registry-{self.port}.log"), "ab")
        self.process = subprocess.Popen([REGISTRY_BINARY, "serve", self.config_path], stdout=self.log,
                                        stderr=subprocess.STDOUT)

        def answers():
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return True
            except urllib.error.HTTPError:
                return True  # 401 with token auth: up all the same
            except OSError:
                return False
        wait_for(answers, timeout=30, what="the registry to start")

    def kill(self):
        self.process.kill()
        self.process.wait()
        self.log.close()

    def stop(self):
        stop_process(self.process)
        self.log.close()

    def blob_data_path(self, digest):
        hex_digest = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hex_digest[:2], hex_digest, "data")


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """A Bearer token service as the distribution spec describes: `GET /token?service&scope`
    answers `{"token": <JWT>}` granting the asked actions, signed with RS256 by a key whose
    certificate the registry trusts. Repositories under `private/` are refused (401)."""

    def __init__(self, root):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modeld test token issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.certificate_path = os.path.join(root, "token-issuer.pem")
        with open(self.certificate_path, "wb") as file:
            file.write(certificate.public_bytes(serialization.Encoding.PEM))
        public_der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        # libtrust's key ID, which the registry looks trusted keys up by.
        encoded = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode()
        self.key_id = ":".join(encoded[index:index + 4] for index in range(0, len(encoded), 4))
        self.service = "modeld-test-registry"
        self.issuer = "modeld-test-issuer"
        self.requests = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                scopes = query.get("scope", [])
                service.requests.append(scopes)
                access = []
                for scope in scopes:
                    kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("", "", "")
                    if name.startswith("private/"):
                        self.send_response(401)
                        self.end_headers()
                        return
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                body = json.dumps({"token": service.sign(access)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_port}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, access):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.key_id}
        claims = {"iss": self.issuer, "sub": "modeld-test", "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def stop(self):
        self.server.shutdown()


class SlowProxy:
    """Forwards TCP connections to `target_port`, sending the answers back at most
    `bytes_per_second`, and records each request's first line and `Range` header and the
    bytes sent back."""

    def __init__(self, target_port, bytes_per_second):
        self.target_port = target_port
        self.bytes_per_second = bytes_per_second
        self.requests = []
        self.bytes_answered = 0
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _requests(self, client, upstream):
        buffer = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buffer = (buffer + data)[-65536:]
                while b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    if lines and lines[0].split(" ")[0] in ("GET", "HEAD", "PUT", "PATCH", "POST"):
                        headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
                                   for line in lines[1:] if ":" in line}
                        with self.lock:
                            self.requests.append((lines[0], headers.get("range")))
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def _answers(self, upstream, client):
        chunk = 16384
        try:
            while True:
                data = upstream.recv(chunk)
                if not data:
                    break
                client.sendall(data)
                with self.lock:
                    self.bytes_answered += len(data)
                time.sleep(len(data) / self.bytes_per_second)
        except OSError:
            pass
        finally:
            # shutdown, not just close: the other thread is blocked reading these sockets, and
            # a close alone would not end the connection while it is.
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self):
        self.listener.close()
