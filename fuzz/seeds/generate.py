#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Seeds are small valid (and a few nearly valid) inputs the fuzzer mutates
from: the RFC 6455 §5.7 example frames, the RFC 6455 §1.2/§1.3 sample
handshake, and a closing handshake. Run from anywhere; the output is
deterministic and committed.
"""
import base64
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # the key of RFC 6455 §5.7


def masked(data, key=MASK):
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def frame(opcode, payload, fin=True, mask=None):
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        return head + mask + masked(payload, mask)
    return head + payload


# RFC 6455 §5.7, unmasked (as a server sends) and masked (as a client sends).
def rfc_frames(mask):
    return {
        "text_hello": frame(0x1, b"Hello", mask=mask),
        "fragmented_hello": frame(0x1, b"Hel", fin=False, mask=mask)
        + frame(0x0, b"lo", mask=mask),
        "ping_hello": frame(0x9, b"Hello", mask=mask),
        "pong_hello": frame(0xA, b"Hello", mask=mask),
        "binary_256": frame(0x2, bytes(range(256)), mask=mask),
        "binary_64k_header": frame(0x2, b"", mask=mask)[:1]
        + bytes([(0x80 if mask else 0) | 127])
        + struct.pack(">Q", 65536)
        + (mask or b"")
        + bytes(64),
        "close_normal": frame(0x8, struct.pack(">H", 1000) + b"bye", mask=mask),
        "ping_in_fragments": frame(0x1, "Hé".encode(), fin=False, mask=mask)
        + frame(0x9, b"", mask=mask)
        + frame(0x0, "llo €".encode(), mask=mask)
        + frame(0x8, b"", mask=mask),
        "invalid_utf8": frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", mask=mask),
        "reserved_opcode": frame(0x3, b"", mask=mask),
        "rsv_bits": bytes([0xC1]) + frame(0x1, b"x", mask=mask)[1:],
    }


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    # frame_header: the bare RFC examples (headers and payloads).
    for name, data in rfc_frames(None).items():
        write("frame_header", name, data)
    for name, data in rfc_frames(MASK).items():
        write("frame_header", name + "_masked", data)

    # connection_*: config prefix (frame limit, message limit, flags with
    # auto_pong, control backlog) then K op bytes then the wire.
    config = bytes([0xFF, 0xFF, 0x01, 0x40])
    chunky_ops = bytes([0x00, 0x02, 0x04, 0x03, 0x08, 0x0E])  # feed 1, drain 0, feed 2, send, ...
    for target, mask in (("connection_server", MASK), ("connection_client", None)):
        for name, data in rfc_frames(mask).items():
            write(target, name, config + b"\x00" + data)
            write(target, name + "_chunked", config + bytes([len(chunky_ops)]) + chunky_ops + data)
        # Tight limits and fragmenting sends.
        write(target, "tight_limits", bytes([0x01, 0x01, 0x0B, 0x00, 0x00]) + rfc_frames(mask)["binary_256"])
        # permessage-deflate (flag bits 5-7): RFC 7692 §7.2.3.1 "Hello",
        # compressed, then the same split into two fragments (§7.2.3.3).
        deflate = bytes([0xFF, 0xFF, 0xE1, 0x40, 0x00])
        hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
        def rsv1(data):
            return bytes([data[0] | 0x40]) + data[1:]
        write(target, "deflate_hello", deflate + rsv1(frame(0x1, hello, mask=mask)))
        write(
            target,
            "deflate_fragmented",
            deflate
            + rsv1(frame(0x1, hello[:3], fin=False, mask=mask))
            + frame(0x0, hello[3:], mask=mask)
            + frame(0x8, struct.pack(">H", 1000), mask=mask),
        )

    # utf8_validator: a split count, split lengths, then text.
    samples = [
        "Hello-µ@ßöäüàá-UTF-8!!".encode(),
        "κόσμε €𝄞".encode(),
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
    ]
    for i, s in enumerate(samples):
        write("utf8_validator", "sample_%d" % i, bytes([3, 1, 2, 3]) + s)

    # Handshakes (RFC 6455 §1.2/§1.3), with a selector byte in front.
    request = (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    write("handshake_request", "rfc_request", b"\x00" + request)
    write("handshake_request", "rfc_request_tight", b"\x11" + request)
    write("handshake_request", "pipelined_frame", b"\x00" + request + frame(0x1, b"Hello", mask=MASK))
    write(
        "handshake_request",
        "wrong_version",
        b"\x00" + request.replace(b"Version: 13", b"Version: 8"),
    )
    accept = base64.b64encode(hashlib.sha1(KEY + GUID).digest())
    assert accept == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n\r\n"
    )
    write("handshake_response", "rfc_response", b"\x02" + response)
    write(
        "handshake_response",
        "rfc_response_deflate",
        b"\x06" + response[:-2] + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    )
    write("handshake_response", "forbidden", b"\x00HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    # The HTTP/2 extended CONNECT (RFC 8441 §5): selector, :protocol line,
    # then the method, target and fields as an HTTP/1.1-style head.
    connect = (
        b"CONNECT /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Origin: http://www.example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    write("handshake_h2", "rfc8441_request", b"\x00websocket\n" + connect)
    write("handshake_h2", "other_protocol", b"\x00connect-udp\n" + connect)
    write("handshake_h2", "plain_connect", b"\x01" + connect)


if __name__ == "__main__":
    main()
