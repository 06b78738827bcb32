"""Forwarding audit records to other systems: a webhook, syslog, Splunk HEC.

Each ``Forwarder`` runs its own thread, reads durable records after its *cursor* (the last seq
it delivered, persisted in ``<datadir>/audit/cursors/<name>.json``, so a restart resumes where
it stopped: at least once, never skipping), sends them in batches, and on failure retries with
exponential backoff, jitter and a cap, without ever advancing the cursor past an undelivered
record. Request handling never waits for it: ``AuditLog.record`` only queues.

Senders:

* ``WebhookSender``: ``POST`` of ``{"count": n, "records": [...]}`` (application/json), optional
  ``Authorization: Bearer``; any 2xx is success.
* ``SyslogSender``: RFC 5424 messages over UDP (one datagram each) or TCP with octet-counting
  framing (RFC 6587: ``LEN SP MSG``). Facility 13 (log audit); severity 6 (info), 4 for 4xx,
  3 for 5xx; MSGID is the operation; structured data ``[audit@32473 ...]`` carries the main
  fields (values escape ``"``, ``\\`` and ``]``); MSG is a UTF-8 BOM and the record's JSON.
* ``HecSender``: Splunk HTTP Event Collector, ``POST /services/collector/event`` with
  ``Authorization: Splunk <token>``, events concatenated in one body; success is 200 with
  ``"code": 0``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from datawarehouse.config import AuditConfig
from datawarehouse.errors import ForwardFailed, InvalidInput
from datawarehouse.service.audit.record import AuditRecord

log = logging.getLogger(__name__)
Source = Callable[[int, int], list[AuditRecord]]  # (after seq, limit) -> records


class Sender(Protocol):
    name: str

    def send(self, records: list[AuditRecord]) -> None:
        """Deliver the batch or raise ForwardFailed."""

    def close(self) -> None: ...


# --- retry policy and cursor -------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (0-based): ``min(cap, base * 2**n)`` scaled by a random factor
    in [0.5, 1] (jitter, so many servers do not retry in step)."""

    base: float = 0.5
    cap: float = 60.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        raw: float = min(self.cap, self.base * 2.0 ** min(attempt, 32))
        spread = rng.random() if rng is not None else random.random()
        return raw * (0.5 + 0.5 * spread)


class Cursor:
    """The last seq a forwarder delivered, persisted atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int:
        try:
            return int(json.loads(self.path.read_text())["seq"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{self.path}: malformed forwarder cursor") from exc

    def save(self, seq: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"seq": seq}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def cursor_path(root: Path, name: str) -> Path:
    return root / "audit" / "cursors" / f"{name}.json"


# --- HTTP senders --------------------------------------------------------------------------------


def _check_url(url: str, option: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"{option}: expected an http:// or https:// URL")
    return url


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ForwardFailed(f"cannot reach {urlsplit(url).netloc}: {reason}") from None


class WebhookSender:
    def __init__(self, url: str, token: str = "", *, name: str = "webhook", timeout: float = 10.0) -> None:
        self.url = _check_url(url, "audit.webhook_url")
        self._token = token
        self.name = name
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookSender({urlsplit(self.url).netloc})"

    def send(self, records: list[AuditRecord]) -> None:
        body = json.dumps({"count": len(records), "records": [r.to_doc() for r in records]}).encode()
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        status, _ = _post(self.url, body, headers, self.timeout)
        if not 200 <= status < 300:
            raise ForwardFailed(f"webhook answered HTTP {status}")

    def close(self) -> None:
        return None


class HecSender:
    def __init__(
        self, url: str, token: str, *, name: str = "splunk-hec", sourcetype: str = "dwh:audit", timeout: float = 10.0
    ) -> None:
        if not token:
            raise InvalidInput("audit.hec_token: required")
        self.url = _check_url(url, "audit.hec_url").rstrip("/") + "/services/collector/event"
        self._token = token
        self.name = name
        self.sourcetype = sourcetype
        self.timeout = timeout
        self.host = socket.gethostname()

    def __repr__(self) -> str:
        return f"HecSender({urlsplit(self.url).netloc})"

    def event(self, r: AuditRecord) -> bytes:
        doc = {
            "time": round(r.at.timestamp(), 6),
            "host": self.host,
            "source": "datawarehouse",
            "sourcetype": self.sourcetype,
            "event": r.to_doc(),
        }
        return json.dumps(doc, sort_keys=True).encode()

    def send(self, records: list[AuditRecord]) -> None:
        body = b"\n".join(self.event(r) for r in records)
        headers = {"Authorization": f"Splunk {self._token}", "Content-Type": "application/json"}
        status, answer = _post(self.url, body, headers, self.timeout)
        if status != 200:
            raise ForwardFailed(f"Splunk HEC answered HTTP {status}")
        try:
            code = json.loads(answer).get("code", 0)
        except (ValueError, AttributeError):
            code = 0
        if code != 0:
            raise ForwardFailed(f"Splunk HEC refused the batch (code {code})")

    def close(self) -> None:
        return None


# --- syslog ----------------------------------------------------------------------------------------

SD_ID = "audit@32473"  # 32473: the private enterprise number reserved for documentation (RFC 5612)
FACILITY_LOG_AUDIT = 13
BOM = "\ufeff"
MAX_UDP = 65000
_SD_FIELDS = ("seq", "tenant", "principal", "access_key", "source_ip", "bucket", "key", "version_id", "status",
              "error", "bytes_in", "bytes_out", "duration_us", "request_id")  # fmt: skip


def _header_field(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, clipped; ``-`` if empty."""
    clean = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return clean or "-"


def sd_escape(value: str) -> str:
    """A PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped with a backslash (RFC 5424 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_severity(status: int) -> int:
    if status >= 500:
        return 3
    if status >= 400:
        return 4
    return 6


def format_syslog(
    r: AuditRecord, *, hostname: str, app_name: str = "dwh", procid: str = "", facility: int = 13
) -> bytes:
    pri = facility * 8 + syslog_severity(r.status)
    doc = r.to_doc()
    params = " ".join(f'{name}="{sd_escape(str(doc[name]))}"' for name in _SD_FIELDS if doc[name] not in ("", 0))
    sd = f"[{SD_ID} {params}]" if params else f"[{SD_ID}]"
    header = (
        f"<{pri}>1 {r.time} {_header_field(hostname, 255)} {_header_field(app_name, 48)} "
        f"{_header_field(procid, 128)} {_header_field(r.operation, 32)}"
    )
    return f"{header} {sd} {BOM}".encode() + r.line()


class SyslogSender:
    def __init__(self, address: str, *, name: str = "syslog", hostname: str = "", timeout: float = 10.0) -> None:
        scheme, sep, rest = address.partition("://")
        host, colon, port = rest.rpartition(":")
        if scheme not in ("udp", "tcp") or not sep or not colon or not port.isdigit():
            raise InvalidInput("audit.syslog_address: expected udp://HOST:PORT or tcp://HOST:PORT")
        self.transport = scheme
        self.address = (host.strip("[]"), int(port))
        self.name = name
        self.hostname = hostname or socket.gethostname()
        self.procid = str(os.getpid())
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def message(self, r: AuditRecord) -> bytes:
        return format_syslog(r, hostname=self.hostname, procid=self.procid, facility=FACILITY_LOG_AUDIT)

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                if self.transport == "tcp":
                    self._sock = socket.create_connection(self.address, timeout=self.timeout)
                else:
                    family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
                    self._sock = socket.socket(family, socket.SOCK_DGRAM)
                    self._sock.settimeout(self.timeout)
            except OSError as exc:
                raise ForwardFailed(f"syslog {self.transport}://{self.address[0]}:{self.address[1]}: {exc}") from None
        return self._sock

    def send(self, records: list[AuditRecord]) -> None:
        sock = self._connect()
        try:
            if self.transport == "tcp":
                frames = []
                for r in records:
                    msg = self.message(r)
                    frames.append(f"{len(msg)} ".encode() + msg)  # RFC 6587 octet counting
                sock.sendall(b"".join(frames))
            else:
                for r in records:
                    sock.sendto(self.message(r)[:MAX_UDP], self.address)
        except OSError as exc:
            self.close()
            raise ForwardFailed(f"syslog {self.transport}: {exc}") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --- the forwarding worker -------------------------------------------------------------------------


class Forwarder:
    """Delivers records after its cursor to one sender, in its own thread (``start``/``stop``),
    or one batch at a time (``forward_once``)."""

    def __init__(
        self,
        source: Source,
        sender: Sender,
        cursor: Cursor,
        *,
        batch_size: int = 500,
        backoff: Backoff | None = None,
        poll_seconds: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.sender = sender
        self.cursor = cursor
        self.batch_size = batch_size
        self.backoff = backoff or Backoff()
        self.poll_seconds = poll_seconds
        self.rng = rng or random.Random()
        self.position = cursor.load()
        self.attempts = 0  # sends tried (successful or not), for monitoring
        self.failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def forward_once(self, max_attempts: int | None = None) -> int:
        """Send the next batch (retrying with backoff; ``max_attempts``: give up after that many
        failures with ForwardFailed, cursor unchanged). Returns how many were delivered."""
        batch = self.source(self.position, self.batch_size)
        if not batch:
            return 0
        failed = 0
        while True:
            self.attempts += 1
            try:
                self.sender.send(batch)
                break
            except ForwardFailed as exc:
                failed += 1
                self.failures += 1
                if (max_attempts is not None and failed >= max_attempts) or self._stop.is_set():
                    raise
                delay = self.backoff.delay(failed - 1, self.rng)
                log.warning("audit forwarder %s: %s; retry in %.1fs", self.sender.name, exc, delay)
                if self._stop.wait(delay):
                    raise
        self.position = batch[-1].seq
        self.cursor.save(self.position)
        return len(batch)

    def drain(self, max_attempts: int | None = None) -> int:
        """Forward until nothing is left; returns how many were delivered."""
        total = 0
        while n := self.forward_once(max_attempts):
            total += n
        return total

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"dwh-audit-{self.sender.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.sender.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.forward_once()
            except ForwardFailed:
                continue  # only when stopping
            except Exception as exc:  # reading the log failed: try again later
                log.error("audit forwarder %s: %s", self.sender.name, type(exc).__name__)
                delivered = 0
            if not delivered:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()


def senders_from_config(config: AuditConfig) -> list[Sender]:
    """The senders ``[audit]`` configures (none by default)."""
    out: list[Sender] = []
    if config.webhook_url:
        out.append(WebhookSender(config.webhook_url))
    if config.syslog_address:
        out.append(SyslogSender(config.syslog_address))
    if config.hec_url:
        out.append(HecSender(config.hec_url, config.hec_token))
    return out


def start_forwarders(source: Source, config: AuditConfig, state_dir: Path) -> list[Forwarder]:
    """One running forwarder per configured sender, each resuming from its persisted cursor
    (``<state_dir>/forward-<sender>.cursor``); stop them with ``Forwarder.stop``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    forwarders = []
    for sender in senders_from_config(config):
        forwarder = Forwarder(source, sender, Cursor(state_dir / f"forward-{sender.name}.cursor"))
        forwarder.start()
        forwarders.append(forwarder)
    return forwarders
