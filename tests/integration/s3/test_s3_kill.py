"""Killing the server during uploads: acknowledged objects survive, partial ones never appear."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from serverproc import Server


def test_sigkill_during_uploads_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data_dir = tmp_path / "dwh-data"
    rng = random.Random(5)
    acked: dict[str, str] = {}
    attempted: dict[str, set[str]] = {}
    for round_no in range(3):
        srv = Server(data_dir)
        s3 = srv.client()
        if round_no == 0:
            s3.create_bucket(Bucket="killed")
        stop = threading.Event()

        def upload(worker: int, s3=s3, stop=stop, round_no=round_no) -> None:  # type: ignore[no-untyped-def]
            n = 0
            while not stop.is_set():
                key = f"r{round_no}-w{worker}-{n % 6}"
                body = os.urandom(rng.choice([1000, 70_000, 3 * 1024 * 1024]))
                digest = hashlib.sha256(body).hexdigest()
                attempted.setdefault(key, set()).add(digest)
                try:
                    s3.put_object(Bucket="killed", Key=key, Body=body)
                except (ClientError, BotoCoreError):
                    return
                acked[key] = digest
                n += 1

        threads = [threading.Thread(target=upload, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        threading.Event().wait(rng.uniform(1.0, 2.5))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    srv = Server(data_dir)
    try:
        s3 = srv.client()
        listed = {
            o["Key"]
            for p in s3.get_paginator("list_objects_v2").paginate(Bucket="killed")
            for o in p.get("Contents", [])
        }
        for key in listed:
            digest = hashlib.sha256(s3.get_object(Bucket="killed", Key=key)["Body"].read()).hexdigest()
            assert digest in attempted[key], f"{key}: content matches no upload that was sent"
        for key, digest in acked.items():
            assert key in listed, f"acknowledged {key} lost"
            # The last acknowledged write wins unless a later, unacknowledged one committed.
            body = s3.get_object(Bucket="killed", Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() in attempted[key]
        assert acked, "no upload finished before the kills: the test proved nothing"
    finally:
        assert "Traceback" not in srv.stop()
