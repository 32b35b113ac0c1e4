#!/usr/bin/env python3
"""A stand-in for bitcoind's JSON-RPC server: authentication and method whitelisting exactly as
Bitcoin Core does them, nothing else (no chain). Written for archy's tests from the rules in
bitcoin/bitcoin src/httprpc.cpp (RPCAuthorized, CheckUserAuthorized, HTTPReq_JSONRPC,
InitRPCAuthentication) and share/rpcauth/rpcauth.py:

- `rpcauth=<user>:<salt>$<hmac>`: the password is valid when HMAC-SHA256 keyed with the salt
  *string* over the password, hex encoded, equals <hmac>; several lines may name one user.
- Only POST (405 otherwise); no Authorization header -> 401 with WWW-Authenticate; a header that
  is not `Basic <base64 user:pass>` or a wrong password -> 401.
- `rpcwhitelist=<user>:<m1>,<m2>` (split on ',' and ' '); repeated lines for a user intersect.
  `rpcwhitelistdefault` defaults to 1 when any rpcwhitelist is set. A user without a whitelist
  while the default is on -> 403 for everything; a method not in the user's whitelist -> 403
  (checked for every member of a batch before any runs).

Usage: standin_bitcoind.py BITCOIN_CONF LOG_FILE. Listens on 127.0.0.1 (an OS-chosen port,
printed as the first line on stdout), answers a few read-only calls with fixed values, and logs
one line per request: "<status> <user or -> <method or ->".
"""
import base64
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_conf(path):
    rpcauth, whitelist_lines, whitelist_default = [], [], None
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key == "rpcauth":
            fields = value.split(":")
            salt_hmac = fields[-1].split("$")
            if len(fields) != 2 or len(salt_hmac) != 2:
                sys.exit("Invalid -rpcauth argument.")
            rpcauth.append((fields[0], salt_hmac[0], salt_hmac[1]))
        elif key == "rpcwhitelist":
            whitelist_lines.append(value)
        elif key == "rpcwhitelistdefault":
            whitelist_default = value not in ("0", "")
    if whitelist_default is None:
        whitelist_default = bool(whitelist_lines)
    whitelists = {}
    for entry in whitelist_lines:
        user, sep, methods = entry.partition(":")
        if not sep:
            whitelists.setdefault(user, set())
            continue
        new = {m for m in methods.replace(" ", ",").split(",") if m}
        whitelists[user] = (whitelists[user] & new) if user in whitelists else new
    return rpcauth, whitelists, whitelist_default


RESULTS = {
    "getblockcount": 840000,
    "getbestblockhash": "00" * 32,
    "getblockchaininfo": {"chain": "main", "blocks": 840000},
    "getnetworkinfo": {"version": 280100, "subversion": "/Satoshi:28.1.0/", "relayfee": 0.00001},
    "getmempoolinfo": {"size": 0},
    "estimatesmartfee": {"feerate": 0.0001, "blocks": 2},
    "help": "stand-in",
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=None, user="-", method="-", headers=()):
        with self.server.log_lock:
            with open(self.server.log_path, "a", encoding="utf-8") as log:
                log.write(f"{status} {user} {method}\n")
        data = b"" if body is None else (json.dumps(body) + "\n").encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(405)

    def authorized_user(self):
        header = self.headers.get("Authorization")
        if header is None or not header.startswith("Basic "):
            return None, header is None
        try:
            userpass = base64.b64decode(header[6:].strip(), validate=True).decode("latin-1")
        except ValueError:
            return None, False
        if ":" not in userpass:
            return None, False
        user, password = userpass.split(":", 1)
        for name, salt, expected in self.server.rpcauth:
            if not hmac.compare_digest(name, user):
                continue
            mac = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(mac, expected):
                return user, False
        return None, False

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        user, _missing = self.authorized_user()
        if user is None:
            self.reply(401, headers=[("WWW-Authenticate", 'Basic realm="jsonrpc"')])
            return
        try:
            request = json.loads(body)
        except ValueError:
            self.reply(500, {"result": None, "error": {"code": -32700, "message": "Parse error"}, "id": None}, user)
            return
        whitelist = self.server.whitelists.get(user)
        if whitelist is None and self.server.whitelist_default:
            self.reply(403, user=user)
            return
        calls = request if isinstance(request, list) else [request]
        for call in calls:
            method = call.get("method") if isinstance(call, dict) else None
            if whitelist is not None and method not in whitelist:
                self.reply(403, user=user, method=str(method))
                return
        replies = []
        for call in calls:
            method = call["method"]
            result = RESULTS.get(method, {"method": method})
            replies.append({"result": result, "error": None, "id": call.get("id"),
                            "authenticated_as": user})
        names = ",".join(c["method"] for c in calls)
        self.reply(200, replies if isinstance(request, list) else replies[0], user, names)


def main():
    conf, log_path = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.rpcauth, server.whitelists, server.whitelist_default = parse_conf(conf)
    server.log_path = log_path
    server.log_lock = threading.Lock()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
