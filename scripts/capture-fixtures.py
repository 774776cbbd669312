#!/usr/bin/env python3
"""Capture the bytes real MQTT clients and a real broker put on the wire, for
tests/codec_fixtures.rs.

Two modes, both on 127.0.0.1 only, both bounded in time:

  clients  A minimal fake server that runs each mosquitto_pub / mosquitto_sub command line
           of CLIENT_RUNS against itself, records every packet the client sends, and answers
           CONNACK / SUBACK / PUBACK / PUBREC / PUBCOMP / UNSUBACK / PINGRESP so that the
           client proceeds to its next packet and exits.
  broker   Starts /usr/sbin/mosquitto on a free loopback port (ended by its PID), connects a
           raw socket, sends hand-built v3.1.1 and v5 packets, and records the broker's
           CONNACK / SUBACK / PUBACK / PUBREC / PUBCOMP answers.

Output: one block per run, the exact command line, then each packet as hex. The fixtures
file spells these bytes out field by field; rerun this to check them after a tool upgrade.

Usage: scripts/capture-fixtures.py [clients|broker|all]
"""

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
RUN_TIMEOUT_S = 15

# Each entry: a label and the client's arguments (the port is appended).
CLIENT_RUNS = [
    ("pub v3.1 qos0 retain + will + user/pass",
     ["mosquitto_pub", "-V", "31", "-i", "c31", "-k", "30", "-u", "alice", "-P", "pw",
      "--will-topic", "w/t", "--will-payload", "gone", "--will-qos", "1", "--will-retain",
      "-t", "a/b", "-m", "hi", "-r", "-q", "0"]),
    ("pub v3.1.1 qos1 retain",
     ["mosquitto_pub", "-V", "311", "-i", "c311", "-k", "60", "-t", "x/y/z", "-m", "hello",
      "-q", "1", "-r"]),
    ("pub v3.1.1 qos2",
     ["mosquitto_pub", "-V", "311", "-i", "c311q2", "-t", "t", "-m", "q2", "-q", "2"]),
    ("pub v5 qos2 + properties",
     ["mosquitto_pub", "-V", "5", "-i", "c5", "-k", "20", "-u", "bob", "-P", "secret",
      "-D", "connect", "session-expiry-interval", "60",
      "-D", "publish", "user-property", "a", "b",
      "-D", "publish", "message-expiry-interval", "30",
      "-t", "s/1", "-m", "v5", "-q", "2", "-r"]),
    ("pub v5 qos1 + will",
     ["mosquitto_pub", "-V", "5", "-i", "c5w", "--will-topic", "lw", "--will-payload", "x",
      "--will-qos", "2", "-D", "will", "will-delay-interval", "10",
      "-t", "q/1", "-m", "m", "-q", "1"]),
    ("pub v5 qos0 retain + payload format + content type",
     ["mosquitto_pub", "-V", "5", "-i", "c5q0", "-D", "publish", "payload-format-indicator", "1",
      "-D", "publish", "content-type", "text/plain", "-t", "r/0", "-m", "zero", "-q", "0",
      "-r"]),
    ("sub v3.1 qos1 -E",
     ["mosquitto_sub", "-V", "31", "-i", "s31", "-t", "a/+", "-q", "1", "-E"]),
    ("sub v3.1.1 two filters qos2 -E",
     ["mosquitto_sub", "-V", "311", "-i", "s311", "-t", "a/#", "-t", "b", "-q", "2", "-E"]),
    ("sub v5 subscription-identifier -E",
     ["mosquitto_sub", "-V", "5", "-i", "s5", "-D", "subscribe", "subscription-identifier",
      "7", "-t", "$share/g/x/+", "-q", "1", "-E"]),
    ("sub v3.1.1 pingreq (keepalive 5, timeout 6)",
     ["mosquitto_sub", "-V", "311", "-i", "p311", "-k", "5", "-t", "p", "-W", "6"]),
    ("sub v5 pingreq (keepalive 5, timeout 6)",
     ["mosquitto_sub", "-V", "5", "-i", "p5", "-k", "5", "-t", "p", "-W", "6"]),
]


def remaining_length(buf, start):
    """(value, bytes used) of the variable byte integer at buf[start:], or None if cut."""
    value, shift = 0, 0
    for i in range(4):
        if start + i >= len(buf):
            return None
        byte = buf[start + i]
        value |= (byte & 0x7F) << shift
        if byte & 0x80 == 0:
            return value, i + 1
        shift += 7
    raise ValueError("remaining length longer than 4 bytes")


def varint(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def utf8(text):
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def read_packet(conn, pending):
    """Reads one whole packet from conn (bytes already read in pending); None at EOF."""
    while True:
        if len(pending) >= 2:
            rl = remaining_length(pending, 1)
            if rl is not None and len(pending) >= 1 + rl[1] + rl[0]:
                end = 1 + rl[1] + rl[0]
                frame = bytes(pending[:end])
                del pending[:end]
                return frame
        chunk = conn.recv(4096)
        if not chunk:
            return None
        pending.extend(chunk)


def fake_server_answer(frame, version):
    """The answer that lets the client carry on, and the protocol level CONNECT set."""
    kind = frame[0] >> 4
    body = frame[1 + remaining_length(frame, 1)[1]:]
    v5 = version == 5
    if kind == 1:
        name_len = int.from_bytes(body[0:2], "big")
        version = body[2 + name_len]
        v5 = version == 5
        return packet(0x20, b"\x00\x00" + (b"\x00" if v5 else b"")), version
    if kind == 3:
        qos = (frame[0] >> 1) & 3
        if qos == 0:
            return None, version
        topic_len = int.from_bytes(body[0:2], "big")
        pid = body[2 + topic_len:4 + topic_len]
        return packet(0x40 if qos == 1 else 0x50, pid), version
    if kind == 6:
        return packet(0x70, body[0:2]), version
    if kind == 8:
        pid = body[0:2]
        pos = 2
        if v5:
            plen, used = remaining_length(body, pos)
            pos += used + plen
        codes = bytearray()
        while pos < len(body):
            flen = int.from_bytes(body[pos:pos + 2], "big")
            pos += 2 + flen
            codes.append(body[pos] & 3)
            pos += 1
        return packet(0x90, pid + (b"\x00" if v5 else b"") + bytes(codes)), version
    if kind == 10:
        return packet(0xB0, body[0:2] + (b"\x00\x00" if v5 else b"")), version
    if kind == 12:
        return packet(0xD0, b""), version
    return None, version


def run_client(label, args):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(1)
    listener.settimeout(RUN_TIMEOUT_S)
    port = listener.getsockname()[1]
    argv = args + ["-h", HOST, "-p", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    frames = []
    try:
        conn, _ = listener.accept()
        conn.settimeout(RUN_TIMEOUT_S)
        pending, version = bytearray(), None
        while True:
            frame = read_packet(conn, pending)
            if frame is None:
                break
            frames.append(frame)
            answer, version = fake_server_answer(frame, version)
            if answer:
                conn.sendall(answer)
            if frame[0] >> 4 == 14:
                break
        conn.close()
        proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait()
        listener.close()
    print(f"## {label}")
    print(f"$ {shlex.join(args)} -h {HOST} -p PORT")
    for frame in frames:
        print(f"  client> {frame.hex(' ')}")
    print()


def connect_v311():
    # CONNECT MQTT 3.1.1, clean session, keep alive 60, client id "raw311".
    return packet(0x10, utf8("MQTT") + b"\x04\x02\x00\x3c" + utf8("raw311"))


def connect_v5():
    # CONNECT MQTT 5, clean start, keep alive 60, no properties, client id "raw5".
    return packet(0x10, utf8("MQTT") + b"\x05\x02\x00\x3c\x00" + utf8("raw5"))


def broker_script(v5):
    props = b"\x00" if v5 else b""
    return [
        ("CONNECT", connect_v5() if v5 else connect_v311()),
        ("SUBSCRIBE a/b qos2 + c qos1", packet(
            0x82, b"\x00\x01" + props + utf8("a/b") + b"\x02" + utf8("c/#") + b"\x01")),
        ("PUBLISH qos1 id 2 to a/b", packet(0x32, utf8("a/b") + b"\x00\x02" + props + b"p1")),
        ("PUBLISH qos2 id 3 to z", packet(0x34, utf8("z") + b"\x00\x03" + props + b"p2")),
        ("PUBREL id 3", packet(0x62, b"\x00\x03")),
        ("UNSUBSCRIBE c/#", packet(0xA2, b"\x00\x04" + props + utf8("c/#"))),
        ("PINGREQ", packet(0xC0, b"")),
    ]


def run_broker():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    port = listener.getsockname()[1]
    listener.close()
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
        conf.write(f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n")
        conf_path = conf.name
    version_out = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True)
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", conf_path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while True:
            try:
                probe = socket.create_connection((HOST, port), timeout=1)
                probe.close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        print(f"## broker: {version_out.stdout.splitlines()[0]}")
        print(f"$ /usr/sbin/mosquitto -c CONF  # CONF: listener PORT {HOST}, "
              "allow_anonymous true, persistence false")
        for v5 in (False, True):
            print(f"### {'MQTT 5' if v5 else 'MQTT 3.1.1'}")
            conn = socket.create_connection((HOST, port), timeout=RUN_TIMEOUT_S)
            pending = bytearray()
            for label, frame in broker_script(v5):
                print(f"  client> {frame.hex(' ')}   # {label}")
                conn.sendall(frame)
                # The broker answers each of these with exactly one packet, except the
                # QoS 1 PUBLISH to a/b, which we are subscribed to: it also delivers it.
                answers = 2 if label.startswith("PUBLISH qos1") else 1
                for _ in range(answers):
                    answer = read_packet(conn, pending)
                    print(f"  broker> {answer.hex(' ')}")
            conn.close()
        print()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=RUN_TIMEOUT_S)
        os.unlink(conf_path)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "all"
    if mode in ("clients", "all"):
        for label, args in CLIENT_RUNS:
            run_client(label, args)
    if mode in ("broker", "all"):
        run_broker()


if __name__ == "__main__":
    main()
