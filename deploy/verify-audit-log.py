#!/usr/bin/env python3
"""Verify a kmsd audit log, or an archive of one, without kmsd: a short, independent check for auditors.

Usage: verify-audit-log.py PATH/TO/kmsd.db [--public-key HEX]
       verify-audit-log.py --archive PATH/TO/ARCHIVE [--public-key HEX]

A database: checks that sequence numbers run without gaps (from 1, or from just after the last prune mark left by
`kmsctl audit archive`, whose hash the first record must follow), that each record's prev_hash is the previous
record's hash, that each hash is the SHA-256 of the record's canonical encoding, and that every checkpoint's head
hash is the hash of the record it names. With --public-key (the daemon logs it at start-up and every VerifyLog
returns it) and the `cryptography` package installed, it also checks each checkpoint's and prune mark's Ed25519
signature: without them, a deletion disguised by a forged prune mark is not caught.

An archive: checks its records run from the header's first to last sequence number, chain from the header's
prev_hash, hash as stored, and that its closing checkpoint covers the last record (and, with --public-key and
`cryptography`, is signed by the log's key).
Exits 0 when intact, 1 with the first problem otherwise. Only the standard library is required.
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


def record_hash(fields):
    """The hash of a record whose JSON columns are objects, and the hash it carries."""
    fields = dict(fields)
    stored_hash = fields.pop("hash")
    return hashlib.sha256(canonical(fields)).hexdigest(), stored_hash


def signature_checker(public_key):
    """A function (message, hex signature) -> bool, or a reason signatures cannot be checked."""
    if public_key is None:
        return "not checked (give --public-key)"
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return "not checked (pip install cryptography)"
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))

    def check(message, signature):
        try:
            key.verify(bytes.fromhex(signature), message)
            return True
        except Exception:
            return False
    return check


def checkpoint_message(cp):
    return canonical({"version": 1, "head_seq": cp["head_seq"], "head_hash": cp["head_hash"], "time": cp["time"],
                      "log_id": cp["log_id"]})


def prune_message(mark):
    return canonical({"kind": "prune", "version": 1, "through_seq": mark["through_seq"],
                      "through_hash": mark["through_hash"], "time": mark["time"], "log_id": mark["log_id"]})


def verify_db(path, public_key):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    check = signature_checker(public_key)
    signatures = "verified" if callable(check) else check
    log_id = db.execute("SELECT value FROM meta WHERE name = 'audit_log_id'").fetchone()
    log_id = bytes(log_id[0]).decode() if log_id else None
    try:
        marks = db.execute("SELECT id, through_seq, through_hash, time, log_id, signature FROM audit_prunes").fetchall()
    except sqlite3.OperationalError:
        marks = []
    start_seq, start_hash = 0, GENESIS
    for mark in marks:
        if mark["log_id"] != log_id or (callable(check) and not check(prune_message(mark), mark["signature"])):
            return fail(mark["through_seq"], f"prune mark #{mark['id']} does not verify: records were removed "
                                             "outside kmsd's archive path")
        if mark["through_seq"] > start_seq:
            start_seq, start_hash = mark["through_seq"], mark["through_hash"]

    checkpoints = [cp for cp in db.execute("SELECT id, head_seq, head_hash, time, log_id, signature "
                                           "FROM audit_checkpoints") if cp["head_seq"] > start_seq]
    signed = {cp["head_seq"]: cp for cp in checkpoints}
    expected, prev = start_seq + 1, start_hash
    for row in db.execute(f"SELECT {FIELDS} FROM audit_events WHERE seq > ? ORDER BY seq", (start_seq,)):
        seq = row["seq"]
        if seq != expected:
            return fail(expected, f"record {expected} is missing (rows deleted, and not through kmsd's archive path)")
        if row["prev_hash"] != prev:
            return fail(seq, f"record {seq} does not follow record {seq - 1}")
        fields = dict(row)
        fields["parameters"] = json.loads(fields["parameters"])
        fields["encryption_context"] = json.loads(fields["encryption_context"])
        computed, stored = record_hash(fields)
        if computed != stored:
            return fail(seq, f"record {seq} was altered")
        if seq in signed and signed[seq]["head_hash"] != stored:
            return fail(seq, f"record {seq} is not the record checkpoint #{signed[seq]['id']} signed")
        prev, expected = stored, expected + 1
    last = expected - 1
    for cp in checkpoints:
        if cp["head_seq"] > last:
            return fail(last + 1, f"the log ends at {last} but checkpoint #{cp['id']} covers {cp['head_seq']}")
        if callable(check) and not check(checkpoint_message(cp), cp["signature"]):
            return fail(cp["head_seq"], f"checkpoint #{cp['id']} has a bad signature")
    archived = f"; records 1 to {start_seq} archived" if start_seq else ""
    print(f"OK: {last - start_seq} records chain from {start_seq + 1} to {last}{archived}; "
          f"{len(checkpoints)} checkpoint(s) match; signatures {signatures}")
    return 0


def verify_archive(path, public_key):
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not lines or lines[0].get("format") != "kmsd-audit-archive" or lines[0].get("version") != 1:
        return fail(0, "not a kmsd audit archive (version 1)")
    header, body = lines[0], lines[1:]
    if not body or "checkpoint" not in body[-1]:
        return fail(header["last_sequence"], "the archive ends without its checkpoint (cut short?)")
    cp, records = body[-1]["checkpoint"], body[:-1]
    expected, prev = header["first_sequence"], header["prev_hash"]
    for record in records:
        seq = record.get("seq")
        if seq != expected:
            return fail(expected, f"record {expected} is missing")
        if record.get("prev_hash") != prev:
            return fail(seq, f"record {seq} does not follow record {seq - 1}")
        computed, stored = record_hash(record)
        if computed != stored:
            return fail(seq, f"record {seq} was altered")
        prev, expected = stored, expected + 1
    last = expected - 1
    if not records or last != header["last_sequence"] or prev != header["last_hash"]:
        return fail(last, "the records do not end where the header says")
    if cp["head_seq"] != last or cp["head_hash"] != prev or cp["log_id"] != header["log_id"]:
        return fail(last, "the checkpoint does not cover the archive's last record")
    check = signature_checker(public_key)
    if callable(check) and not check(checkpoint_message(cp), cp["signature"]):
        return fail(last, "the checkpoint's signature does not verify with the given public key")
    signature = "verified" if callable(check) else check
    print(f"OK: archive of records {header['first_sequence']} to {last} ({len(records)} records) chains from "
          f"{header['prev_hash'][:16]}...; checkpoint matches; signature {signature}")
    return 0


def fail(seq, message):
    print(f"TAMPERED at sequence {seq}: {message}")
    return 1


def main(argv):
    args = argv[1:]
    public_key = None
    if "--public-key" in args:
        i = args.index("--public-key")
        if i + 1 >= len(args):
            print(__doc__, file=sys.stderr)
            return 2
        public_key = args[i + 1]
        del args[i:i + 2]
    if len(args) == 2 and args[0] == "--archive":
        return verify_archive(args[1], public_key)
    if len(args) == 1 and not args[0].startswith("--"):
        return verify_db(args[0], public_key)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
