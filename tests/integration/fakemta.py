"""A scriptable receiving MTA for outbound delivery tests (asyncio).

    mta = FakeMTA("127.0.0.2", port).start()
    ... postel delivers to it ...
    mta.wait_messages(1)          # [Message(sender, rcpts, data, ...)]
    mta.stop()

Behaviour is set through attributes, changeable while it runs:
    greeting        (code, text) of the banner
    ehlo            list of EHLO keywords offered (None: refuse EHLO with 502)
    rcpt_reply      fn(address) -> (code, text) or None for 250
    mail_reply      fn(sender, params) -> (code, text) or None for 250
    data_reply      fn(message) -> (code, text) or None for 250
    data_delay      seconds to wait before answering the end of data
    tls             an ssl.SSLContext: STARTTLS is offered and works
    auth            {user: password}: AUTH PLAIN/LOGIN offered; required
                    for MAIL when auth_required
Each accepted message records the envelope, the ESMTP parameters, the
content, whether TLS was on and who authenticated.  Every connection is
counted (connections; active and max_active count those open at once)
and every command line is logged (commands).
"""
import asyncio
import base64
import threading
import time


class Message:
    def __init__(self, sender, mail_params, rcpts, data, tls, auth_user, chunking, conn_id):
        self.sender = sender
        self.mail_params = mail_params
        self.rcpts = rcpts              # [(address, params)]
        self.data = data
        self.tls = tls
        self.auth_user = auth_user
        self.chunking = chunking
        self.conn_id = conn_id

    @property
    def rcpt_addrs(self):
        return [a for a, _ in self.rcpts]

    def __repr__(self):
        return "Message(%r -> %r, %d bytes)" % (self.sender, self.rcpt_addrs, len(self.data))


def _split_path(arg, prefix):
    rest = arg[len(prefix):].strip()
    if not rest.startswith("<"):
        return None, ""
    end = rest.find(">")
    if end < 0:
        return None, ""
    return rest[1:end], rest[end + 1:].strip()


class FakeMTA:
    def __init__(self, host="127.0.0.1", port=0, hostname="fake.mta.test"):
        self.host = host
        self.port = port
        self.hostname = hostname
        self.greeting = (220, "%s ESMTP fake" % hostname)
        self.ehlo = ["PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES", "SIZE 100000000"]
        self.rcpt_reply = None
        self.mail_reply = None
        self.data_reply = None
        self.data_delay = 0
        self.tls = None
        self.auth = None
        self.auth_required = False
        self.messages = []
        self.commands = []
        self.connections = 0
        self.active = 0                 # connections open now
        self.max_active = 0             # the most ever open at once
        self.loop = None
        self.server = None
        self.thread = None
        self._lock = threading.Lock()

    # ---- control
    def start(self):
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._session, self.host, self.port, reuse_address=True))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            self.server.close()
            self.loop.run_until_complete(self.server.wait_closed())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)
        return self

    def stop(self):
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def wait_messages(self, n, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            with self._lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        with self._lock:
            return list(self.messages)

    def offered(self):
        words = list(self.ehlo or [])
        if self.tls is not None:
            words.append("STARTTLS")
        if self.auth is not None:
            words.append("AUTH PLAIN LOGIN")
        return words

    # ---- protocol
    async def _session(self, reader, writer):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            await self._session_run(reader, writer)
        finally:
            with self._lock:
                self.active -= 1

    async def _session_run(self, reader, writer):
        with self._lock:
            self.connections += 1
            conn_id = self.connections
        st = {"tls": False, "auth": None, "mail": None, "rcpts": [], "ehlo": False}

        async def reply(code, text, more=()):
            lines = list(more)
            out = b""
            for line in lines:
                out += ("%d-%s\r\n" % (code, line)).encode()
            out += ("%d %s\r\n" % (code, text)).encode()
            writer.write(out)
            await writer.drain()

        try:
            await reply(*self.greeting)
            if self.greeting[0] != 220:
                await asyncio.sleep(0.1)
                writer.close()
                return
            while True:
                line = await reader.readline()
                if not line:
                    break
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                with self._lock:
                    self.commands.append(text)
                verb = text.split(" ", 1)[0].upper()
                arg = text[len(verb):].strip()
                if verb == "EHLO":
                    if self.ehlo is None:
                        await reply(502, "5.5.1 EHLO not supported")
                        continue
                    st["ehlo"] = True
                    words = [w for w in self.offered() if not (st["tls"] and w == "STARTTLS")]
                    if words:
                        await reply(250, words[-1], [self.hostname] + words[:-1])
                    else:
                        await reply(250, self.hostname)
                elif verb == "HELO":
                    await reply(250, self.hostname)
                elif verb == "STARTTLS" and self.tls is not None and not st["tls"]:
                    await reply(220, "2.0.0 Ready to start TLS")
                    await writer.start_tls(self.tls)
                    st["tls"] = True
                elif verb == "AUTH" and self.auth is not None:
                    user = await self._auth(arg, reader, reply)
                    if user:
                        st["auth"] = user
                        await reply(235, "2.7.0 Authentication successful")
                    else:
                        await reply(535, "5.7.8 Authentication credentials invalid")
                elif verb == "MAIL":
                    if self.auth_required and not st["auth"]:
                        await reply(530, "5.7.0 Authentication required")
                        continue
                    sender, params = _split_path(arg, "FROM:")
                    r = self.mail_reply(sender, params) if self.mail_reply else None
                    if r:
                        await reply(*r)
                        continue
                    st["mail"] = (sender, params)
                    st["rcpts"] = []
                    await reply(250, "2.1.0 Ok")
                elif verb == "RCPT":
                    addr, params = _split_path(arg, "TO:")
                    if st["mail"] is None:
                        await reply(503, "5.5.1 MAIL first")
                        continue
                    r = self.rcpt_reply(addr) if self.rcpt_reply else None
                    if r:
                        await reply(*r)
                        continue
                    st["rcpts"].append((addr, params))
                    await reply(250, "2.1.5 Ok")
                elif verb == "DATA":
                    if not st["rcpts"]:
                        await reply(554, "5.5.1 No valid recipients")
                        continue
                    await reply(354, "End data with <CR><LF>.<CR><LF>")
                    data = await self._read_data(reader)
                    await self._finish(st, data, reply, conn_id, False)
                elif verb == "BDAT":
                    parts = arg.split()
                    size = int(parts[0])
                    data = await reader.readexactly(size)
                    st.setdefault("bdat", b"")
                    st["bdat"] += data
                    if len(parts) > 1 and parts[1].upper() == "LAST":
                        whole = st.pop("bdat")
                        if not st["rcpts"]:
                            await reply(554, "5.5.1 No valid recipients")
                            continue
                        await self._finish(st, whole, reply, conn_id, True)
                    else:
                        await reply(250, "2.0.0 %d octets received" % size)
                elif verb == "RSET":
                    st["mail"] = None
                    st["rcpts"] = []
                    await reply(250, "2.0.0 Ok")
                elif verb == "NOOP":
                    await reply(250, "2.0.0 Ok")
                elif verb == "QUIT":
                    await reply(221, "2.0.0 Bye")
                    break
                else:
                    await reply(502, "5.5.2 Command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _read_data(self, reader):
        lines = []
        while True:
            line = await reader.readline()
            if not line or line == b".\r\n":
                break
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)
        return b"".join(lines)

    async def _finish(self, st, data, reply, conn_id, chunking):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        sender, params = st["mail"]
        msg = Message(sender, params, list(st["rcpts"]), data, st["tls"], st["auth"], chunking, conn_id)
        r = self.data_reply(msg) if self.data_reply else None
        if r:
            await reply(*r)
        else:
            with self._lock:
                self.messages.append(msg)
            await reply(250, "2.0.0 Ok: queued")
        st["mail"] = None
        st["rcpts"] = []

    async def _auth(self, arg, reader, reply):
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        if mech == "PLAIN":
            if len(parts) > 1:
                blob = parts[1]
            else:
                await reply(334, "")
                blob = (await reader.readline()).decode().strip()
            try:
                _, user, pw = base64.b64decode(blob).decode().split("\0")
            except Exception:
                return None
        elif mech == "LOGIN":
            await reply(334, "VXNlcm5hbWU6")
            user = base64.b64decode((await reader.readline()).strip()).decode()
            await reply(334, "UGFzc3dvcmQ6")
            pw = base64.b64decode((await reader.readline()).strip()).decode()
        else:
            return None
        return user if self.auth.get(user) == pw else None
