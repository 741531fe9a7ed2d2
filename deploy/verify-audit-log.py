#!/usr/bin/env python3
"""Verify a kmsd audit log without kmsd: a short, independent check for auditors.

Usage: verify-audit-log.py PATH/TO/kmsd.db [--public-key HEX]

Checks that sequence numbers run from 1 without gaps, that each record's prev_hash is the previous record's hash,
that each hash is the SHA-256 of the record's canonical encoding, and that every checkpoint's head hash is the
hash of the record it names. With --public-key (the daemon logs it at start-up and every VerifyLog returns it) and
the `cryptography` package installed, it also checks each checkpoint's Ed25519 signature.
Exits 0 when the log is intact, 1 with the first problem otherwise. Only the standard library is required.
"""
import hashlib
import json
import sqlite3
import sys

GENESIS = "0" * 64
FIELDS = ("seq, event_id, event_time, event_name, principal, source_address, user_agent, request_id, key_id, "
          "key_version, key_alias, parameters, encryption_context, reason, outcome, error_code, error_message, "
          "prev_hash, hash")


def canonical(value):
    """kmsd's canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(row):
    fields = dict(row)
    stored_hash = fields.pop("hash")
    fields["parameters"] = json.loads(fields["parameters"])
    fields["encryption_context"] = json.loads(fields["encryption_context"])
    return hashlib.sha256(canonical(fields)).hexdigest(), stored_hash


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--public-key"):
        print(__doc__, file=sys.stderr)
        return 2
    db = sqlite3.connect(f"file:{argv[1]}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    checkpoints = db.execute("SELECT id, head_seq, head_hash, time, log_id, signature FROM audit_checkpoints").fetchall()
    signed = {cp["head_seq"]: cp for cp in checkpoints}

    expected, prev = 1, GENESIS
    for row in db.execute(f"SELECT {FIELDS} FROM audit_events ORDER BY seq"):
        seq = row["seq"]
        if seq != expected:
            return fail(expected, f"record {expected} is missing")
        if row["prev_hash"] != prev:
            return fail(seq, f"record {seq} does not follow record {seq - 1}")
        computed, stored = record_hash(row)
        if computed != stored:
            return fail(seq, f"record {seq} was altered")
        if seq in signed and signed[seq]["head_hash"] != stored:
            return fail(seq, f"record {seq} is not the record checkpoint #{signed[seq]['id']} signed")
        prev, expected = stored, expected + 1
    last = expected - 1
    for cp in checkpoints:
        if cp["head_seq"] > last:
            return fail(last + 1, f"the log ends at {last} but checkpoint #{cp['id']} covers {cp['head_seq']}")

    signatures = "not checked (give --public-key)"
    if len(argv) == 4:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError:
            signatures = "not checked (pip install cryptography)"
        else:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(argv[3]))
            for cp in checkpoints:
                message = canonical({"version": 1, "head_seq": cp["head_seq"], "head_hash": cp["head_hash"],
                                     "time": cp["time"], "log_id": cp["log_id"]})
                try:
                    key.verify(bytes.fromhex(cp["signature"]), message)
                except Exception:
                    return fail(cp["head_seq"], f"checkpoint #{cp['id']} has a bad signature")
            signatures = "verified"
    print(f"OK: {last} records chain from 1 to {last}; {len(checkpoints)} checkpoint(s) match; signatures {signatures}")
    return 0


def fail(seq, message):
    print(f"TAMPERED at sequence {seq}: {message}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
