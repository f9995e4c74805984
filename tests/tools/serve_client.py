"""A small HTTP client for augur serve's tests and load tool (Python 3 stdlib only)."""
import http.client
import json
import socket
import time


class Server:
    def __init__(self, host, port, timeout=300):
        self.host, self.port, self.timeout = host, port, timeout

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict (lower-case names), body bytes)."""
        c = self.conn()
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            elif isinstance(body, str):
                body = body.encode()
            h = {"Content-Type": "application/json"} if body is not None else {}
            h.update(headers or {})
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def post(self, path, obj):
        status, headers, data = self.request("POST", path, obj)
        try:
            doc = json.loads(data)
        except ValueError:
            raise AssertionError(f"POST {path}: status {status}, body is not JSON: {data[:200]!r}")
        return status, headers, doc

    def stream(self, path, obj, on_event=None):
        """POSTs a streaming request; returns (status, [(arrival_s, data_str)], raw text).
        on_event(i, data) may return False to stop reading (and close the connection)."""
        c = self.conn()
        t0 = time.monotonic()
        events = []
        try:
            c.request("POST", path, body=json.dumps(obj).encode(), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                return r.status, [], r.read().decode(errors="replace")
            raw = []
            buf = b""
            while True:
                chunk = r.read1(65536)
                if not chunk:
                    break
                raw.append(chunk)
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    for line in block.decode().split("\n"):
                        if line.startswith("data: "):
                            events.append((time.monotonic() - t0, line[6:]))
                            if on_event and on_event(len(events) - 1, line[6:]) is False:
                                return r.status, events, b"".join(raw).decode()
            return r.status, events, b"".join(raw).decode()
        finally:
            c.close()


def stream_text(events, kind):
    """Concatenated text of a stream's chunks, the finish reason, the usage (or None),
    and the arrival time of each chunk that carried text. Checks the OpenAI chunk shape."""
    assert events, "the stream carried no events"
    assert events[-1][1] == "[DONE]", f"the stream does not end with [DONE]: {events[-1][1][:200]}"
    text, finish, usage, times = [], None, None, []
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    for i, (t, data) in enumerate(events[:-1]):
        d = json.loads(data)
        assert d["object"] == obj, f"chunk {i}: object {d['object']!r}, expected {obj!r}"
        assert d["id"] and isinstance(d["created"], int) and d["model"], f"chunk {i} lacks id/created/model: {d}"
        if not d["choices"]:
            assert "usage" in d and i == len(events) - 2, f"chunk {i}: empty choices but not the final usage chunk"
            usage = d["usage"]
            continue
        ch = d["choices"][0]
        assert finish is None, f"chunk {i} comes after the finishing chunk"
        piece = ch["delta"].get("content", "") if kind == "chat" else ch["text"]
        if kind == "chat" and i == 0:
            assert ch["delta"].get("role") == "assistant", f"first chat chunk has no assistant role: {d}"
        if piece:
            text.append(piece)
            times.append(t)
        finish = ch["finish_reason"]
    assert finish in ("stop", "length"), f"the stream ends without a finish_reason ({finish!r})"
    return "".join(text), finish, usage, times


def wait_port_closed_or(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return False
    except OSError:
        return True
