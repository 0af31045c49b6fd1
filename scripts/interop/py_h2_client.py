#!/usr/bin/env python3
"""WebSockets over HTTP/2 (RFC 8441) against `tether serve`, with Python's
`h2` (the HTTP/2 connection) and `wsproto` (the WebSocket frames on a
stream): cleartext HTTP/2 by prior knowledge.

    python3 py_h2_client.py 127.0.0.1 PORT

The server must serve `/echo` (an echo route) and `/` (the demo page) on a
listener with `http2 = true`. Prints one `PASS name` / `FAIL name: why` line
per check; exit 1 on failure.
"""

import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings
from wsproto.frame_protocol import FrameProtocol, Opcode

FAILED = 0
TIMEOUT = 10


def report(name, ok, why=""):
    global FAILED
    if ok:
        print(f"PASS py-h2 client: {name}")
    else:
        FAILED += 1
        print(f"FAIL py-h2 client: {name}: {why}")


class Client:
    """One HTTP/2 connection, driven by hand: events are read into
    per-stream queues as they arrive."""

    def __init__(self, host, port):
        self.authority = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.flush()
        self.server_settings = None
        self.responses = {}
        self.data = {}
        self.ended = set()
        self.reset = {}
        while self.server_settings is None:
            self.pump()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self):
        """Read once and file what arrived."""
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        for event in self.conn.receive_data(chunk):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                if self.server_settings is None:
                    self.server_settings = {
                        k: v.new_value for k, v in event.changed_settings.items()
                    }
            elif isinstance(event, h2.events.ResponseReceived):
                self.responses[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.reset[event.stream_id] = event.error_code
        self.flush()

    def request(self, headers, end_stream):
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, headers, end_stream=end_stream)
        self.flush()
        while stream not in self.responses and stream not in self.reset:
            self.pump()
        return stream, self.responses.get(stream, {})

    def connect(self, path, protocol="websocket", extra=()):
        headers = [
            (":method", "CONNECT"),
            (":protocol", protocol),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("sec-websocket-version", "13"),
            *extra,
        ]
        return self.request(headers, end_stream=False)

    def get(self, path):
        headers = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
        ]
        stream, response = self.request(headers, end_stream=True)
        while stream not in self.ended and stream not in self.reset:
            self.pump()
        return response, bytes(self.data.pop(stream, b""))

    def send(self, stream, data):
        """Send on a stream, within its flow-control windows."""
        view = memoryview(data)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream),
                self.conn.max_outbound_frame_size,
            )
            if window <= 0:
                self.pump()
                continue
            self.conn.send_data(stream, bytes(view[:window]))
            view = view[window:]
            self.flush()

    def take(self, stream):
        while not self.data.get(stream):
            self.pump()
        return bytes(self.data.pop(stream))


class Socket:
    """A WebSocket on one stream: wsproto's frames in the stream's data."""

    def __init__(self, client, stream):
        self.client = client
        self.stream = stream
        self.frames = FrameProtocol(client=True, extensions=[])

    def send_text(self, text):
        self.client.send(self.stream, self.frames.send_data(text, fin=True))

    def send_binary(self, data):
        self.client.send(self.stream, self.frames.send_data(data, fin=True))

    def close(self, code):
        self.client.send(self.stream, self.frames.close(code))

    def next_message(self):
        """The next whole message (opcode, payload), control frames included."""
        opcode, payload = None, None
        while True:
            for frame in self.frames.received_frames():
                if frame.opcode in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
                    return frame.opcode, frame.payload
                # A frame's payload may come in pieces, each with its opcode.
                if payload is None:
                    opcode = frame.opcode
                    payload = "" if opcode is Opcode.TEXT else bytearray()
                payload += frame.payload
                if frame.message_finished:
                    return opcode, payload
            self.frames.receive_bytes(self.client.take(self.stream))


def check(name, f):
    try:
        f()
    except Exception as e:  # noqa: BLE001 - every failure is a report line
        report(name, False, repr(e))


def main(host, port):
    client = Client(host, port)
    enable = client.server_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
    report(
        "first SETTINGS has SETTINGS_ENABLE_CONNECT_PROTOCOL = 1",
        enable == 1,
        repr(client.server_settings),
    )
    report(
        "SETTINGS_MAX_CONCURRENT_STREAMS is capped",
        0 < client.server_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS, 0) <= 1024,
        repr(client.server_settings),
    )

    def page():
        response, body = client.get("/")
        report(
            "the demo page over h2",
            response.get(":status") == "200" and b"new WebSocket(" in body,
            repr(response),
        )

    check("the demo page over h2", page)

    sockets = []

    def open_two():
        for _ in range(2):
            stream, response = client.connect("/echo")
            ok = response.get(":status") == "200" and "sec-websocket-accept" not in response
            report(f"extended CONNECT on stream {stream}: 200 without an accept key", ok, repr(response))
            sockets.append(Socket(client, stream))

    check("extended CONNECT", open_two)

    def echoes():
        a, b = sockets
        a.send_text("héllo over h2")
        b.send_text("the other stream")
        got_b = b.next_message()
        got_a = a.next_message()
        report("text echo on two streams of one connection",
               got_a == (Opcode.TEXT, "héllo over h2") and got_b == (Opcode.TEXT, "the other stream"),
               repr((got_a, got_b)))
        big = bytes(i % 251 for i in range(1 << 20))
        a.send_binary(big)
        opcode, payload = a.next_message()
        report("1 MiB binary echo within flow control",
               opcode is Opcode.BINARY and bytes(payload) == big,
               f"{opcode} {len(payload)} bytes")
        a.close(1000)
        opcode, payload = a.next_message()
        report("closing handshake on a stream", opcode is Opcode.CLOSE and payload[0] == 1000, repr(payload))
        b.send_text("still here")
        report("the other stream still echoes", b.next_message() == (Opcode.TEXT, "still here"))

    if len(sockets) == 2:
        check("echo", echoes)

    def negatives():
        _, response = client.connect("/echo", protocol="connect-udp")
        report("another :protocol is refused with 501", response.get(":status") == "501", repr(response))
        _, response = client.connect("/echo", extra=[("origin", "https://evil.example")])
        report("a cross-origin CONNECT is refused with 403", response.get(":status") == "403", repr(response))
        # RFC 8441 §5: the key is not used; the server answers without an accept.
        _, response = client.connect("/echo", extra=[("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")])
        report("a Sec-WebSocket-Key is ignored (200, no Sec-WebSocket-Accept)",
               response.get(":status") == "200" and "sec-websocket-accept" not in response, repr(response))
        _, response = client.request([
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":path", "/echo"), (":authority", client.authority)], end_stream=False)
        report("a CONNECT without Sec-WebSocket-Version is refused with 426",
               response.get(":status") == "426" and response.get("sec-websocket-version") == "13", repr(response))
        _, response = client.connect("/no-such-socket")
        report("a CONNECT to no WebSocket route is 404", response.get(":status") == "404", repr(response))

    check("refusals", negatives)
    client.sock.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
    sys.exit(1 if FAILED else 0)
