"""Writes a chained audit log of N identical-shape `tool_call` records, chained exactly as `ChainedFileSink` does
(unkeyed: each line sealed by SHA-256 over its bytes up to the seal, plus `}`), for measuring the verifier:
    python3 benches/audit/chain_log.py /tmp/day.jsonl 1000000
    target/release/secure-tools audit verify /tmp/day.jsonl
"""
import hashlib, json, sys
n = int(sys.argv[2])
prev = "sha256:" + "0" * 64
with open(sys.argv[1], "wb") as f:
    for seq in range(1, n + 1):
        rec = {"ts": "2026-12-05T03:07:11.387114Z", "server_id": "demo-file-server", "event": "tool_call",
               "call_id": "bbf9ed58c4d77afa%016x" % seq, "request_id": seq, "tool": "read_file",
               "scopes": ["files.read"], "caller": "stdio", "outcome": "ok", "ok": True,
               "inputs": {"filename": "greeting.txt"}, "duration_us": 153, "transport": "stdio",
               "client_name": "rmcp", "client_version": "3.11.0", "session_id": "bbf9ed58c4d77afa0000000000000001"}
        body = json.dumps(rec, separators=(",", ":")).encode()[:-1] + (',"seq":%d,"prev":"%s"' % (seq, prev)).encode()
        h = "sha256:" + hashlib.sha256(body + b"}").hexdigest()
        f.write(body + (',"hash":"%s"}\n' % h).encode())
        prev = h
