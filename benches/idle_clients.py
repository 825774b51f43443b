#!/usr/bin/env python3
"""Open N idle PostgreSQL client connections and hold them (benchmark helper).

Each connection completes the startup handshake (trust, cleartext, md5 or
SCRAM-SHA-256 authentication) and waits for ReadyForQuery. When all N are
ready it prints "ready N" on stdout, then holds them until stdin reaches EOF,
SIGINT/SIGTERM arrives, or --hold SECONDS pass (with --hold, stdin is
ignored). Then it sends Terminate on each and exits.

Used by benches/compare.sh to measure a pooler's memory per idle client.
Python 3 standard library only.

    python3 benches/idle_clients.py --port 16432 -n 2000 --hold 600
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import resource
import signal
import struct
import sys
import threading
import time

PROTOCOL_3_0 = 196608


class PgError(Exception):
    pass


def parse_error(body: bytes) -> str:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return "%s %s: %s" % (fields.get("S", "ERROR"), fields.get("C", "?"), fields.get("M", "?"))


def msg(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("!I", len(payload) + 4) + payload


class Scram:
    """SCRAM-SHA-256 client (RFC 5802/7677), no channel binding."""

    _salted_cache = {}

    def __init__(self, password: str):
        self.password = password.encode("utf-8")  # SASLprep: ASCII passwords unchanged
        self.cnonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = "n=,r=" + self.cnonce
        self.server_signature = None

    def client_first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        sf = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.cnonce):
            raise PgError("SCRAM: server nonce does not extend client nonce")
        key = (self.password, salt, iters)
        salted = self._salted_cache.get(key)
        if salted is None:
            salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
            self._salted_cache[key] = salted
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        final_wo_proof = "c=biws,r=" + nonce  # biws = base64("n,,")
        auth_message = ",".join([self.first_bare, sf, final_wo_proof]).encode()
        client_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return (final_wo_proof + ",p=" + base64.b64encode(proof).decode()).encode()

    def verify_final(self, server_final: bytes) -> None:
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        if "e" in attrs:
            raise PgError("SCRAM: server error: " + attrs["e"])
        if base64.b64decode(attrs.get("v", "")) != self.server_signature:
            raise PgError("SCRAM: bad server signature")


async def read_msg(reader):
    hdr = await reader.readexactly(5)
    tag, length = hdr[:1], struct.unpack("!I", hdr[1:])[0]
    body = await reader.readexactly(length - 4) if length > 4 else b""
    return tag, body


async def connect_one(args):
    reader, writer = await asyncio.open_connection(args.host, args.port)
    try:
        params = b""
        for k, v in (("user", args.user), ("database", args.dbname),
                     ("application_name", "idle_clients")):
            params += k.encode() + b"\0" + v.encode() + b"\0"
        payload = struct.pack("!I", PROTOCOL_3_0) + params + b"\0"
        writer.write(struct.pack("!I", len(payload) + 4) + payload)
        await writer.drain()
        scram = None
        while True:
            tag, body = await read_msg(reader)
            if tag == b"R":
                code = struct.unpack("!I", body[:4])[0]
                if code == 0:  # AuthenticationOk
                    pass
                elif code == 3:  # cleartext
                    writer.write(msg(b"p", args.password.encode() + b"\0"))
                elif code == 5:  # md5
                    salt = body[4:8]
                    inner = hashlib.md5((args.password + args.user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    writer.write(msg(b"p", b"md5" + outer.encode() + b"\0"))
                elif code == 10:  # SASL
                    mechs = [m.decode() for m in body[4:].split(b"\0") if m]
                    if "SCRAM-SHA-256" not in mechs:
                        raise PgError("no supported SASL mechanism in %s" % mechs)
                    scram = Scram(args.password)
                    first = scram.client_first()
                    writer.write(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
                elif code == 11:  # SASLContinue
                    writer.write(msg(b"p", scram.client_final(body[4:])))
                elif code == 12:  # SASLFinal
                    scram.verify_final(body[4:])
                else:
                    raise PgError("unsupported authentication request %d" % code)
                await writer.drain()
            elif tag == b"E":
                raise PgError(parse_error(body))
            elif tag == b"Z":
                return reader, writer
            # S (ParameterStatus), K (BackendKeyData), N (Notice): ignore
    except BaseException:
        writer.close()
        raise


def watch_stdin(loop, event):
    """Set event when stdin reaches EOF (daemon thread: never blocks exit)."""
    def run():
        try:
            while os.read(0, 65536):  # raw fd: no buffer lock at shutdown
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(event.set)
    threading.Thread(target=run, daemon=True).start()


async def main_async(args):
    sem = asyncio.Semaphore(args.concurrency)
    errors = []

    async def guarded(i):
        async with sem:
            for attempt in range(args.retries + 1):
                try:
                    return await asyncio.wait_for(connect_one(args), args.connect_timeout)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                    if attempt == args.retries:
                        errors.append("conn %d: %r" % (i, e))
                        return None
                    await asyncio.sleep(0.05 * (attempt + 1))
                except PgError as e:
                    errors.append("conn %d: %s" % (i, e))
                    return None

    t0 = time.monotonic()
    results = await asyncio.gather(*(guarded(i) for i in range(args.n)))
    conns = [c for c in results if c is not None]
    elapsed = time.monotonic() - t0
    if errors:
        print("idle_clients: %d/%d connections failed; first: %s"
              % (len(errors), args.n, errors[0]), file=sys.stderr)
        for _, w in conns:
            w.close()
        return 1
    print("ready %d" % len(conns), flush=True)
    print("idle_clients: %d connections to %s:%d ready in %.2fs"
          % (len(conns), args.host, args.port, elapsed), file=sys.stderr)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    if args.hold is None:
        watch_stdin(loop, stop)
        await stop.wait()
    else:
        try:
            await asyncio.wait_for(stop.wait(), args.hold)
        except asyncio.TimeoutError:
            pass

    closed_by_server = sum(1 for r, _ in conns if r.at_eof())
    for _, w in conns:
        try:
            w.write(msg(b"X", b""))  # Terminate
            w.close()
        except OSError:
            pass
    await asyncio.sleep(0.1)
    if closed_by_server:
        print("idle_clients: %d connections had been closed by the server"
              % closed_by_server, file=sys.stderr)
    print("idle_clients: closed %d connections" % len(conns), file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6432)
    ap.add_argument("-n", "--clients", dest="n", type=int, default=2000)
    ap.add_argument("--user", default="app")
    ap.add_argument("--password", default=os.environ.get("PGPASSWORD", "app-secret"))
    ap.add_argument("--dbname", default="bench")
    ap.add_argument("--hold", type=float, default=None,
                    help="hold for SECONDS (ignore stdin); default: until stdin EOF or signal")
    ap.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    ap.add_argument("--connect-timeout", type=float, default=30.0)
    ap.add_argument("--retries", type=int, default=3, help="retries on socket errors")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(hard, max(want, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            print("idle_clients: warning: open-files limit %d < %d needed" % (new, want),
                  file=sys.stderr)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
