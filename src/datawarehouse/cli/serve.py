"""``dwh serve``: the S3 endpoint on embedded defaults."""

from __future__ import annotations

import gc
import logging
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from datawarehouse.cli.common import DEFAULT_DATA_DIR, DataDirOpt, console, err_console, handle_errors, options
from datawarehouse.config import ServerConfig, load_config
from datawarehouse.engine.datadir import DataDir
from datawarehouse.errors import ConfigError, DataDirError
from datawarehouse.service import credentials
from datawarehouse.service.access import CallerDirectory
from datawarehouse.service.audit.forward import Forwarder, start_forwarders
from datawarehouse.service.audit.log import AuditLog
from datawarehouse.service.warehouse import Warehouse

MAX_WORKERS = 64


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here (not by uvicorn) so read workers can inherit it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(f"server.address: cannot listen on {host}:{port} ({exc.strerror})") from exc
    sock.set_inheritable(True)
    return sock


def _listen_unix(path: str) -> socket.socket:
    """The primary's Unix socket for its read workers (mode 0600, in a 0700 directory)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(2048)
    return sock


def open_for_serving(data_dir: Path, disks: list[Path] | None) -> Warehouse:
    opts = options(data_dir)
    if not DataDir.exists(data_dir.absolute()):
        wh = Warehouse.init(data_dir, disks or None, opts)
        err_console.print(
            f"created data directory {data_dir.absolute()} "
            f"({len(wh.engine.disks.active())} disks, {wh.engine.default_storage_class()})"
        )
        return wh
    wh = Warehouse.open(data_dir, opts)
    if disks:
        given = {str(p.absolute()) for p in disks}
        recorded = {d.path for d in wh.engine.datadir.disks()}
        if given != recorded:
            wh.close()
            raise DataDirError(
                f"--disk flags differ from the disk set recorded in {data_dir}; use `dwh disk add/remove` "
                "to change it (recorded: " + ", ".join(sorted(recorded)) + ")"
            )
    return wh


@handle_errors
def serve(
    disk: Annotated[
        list[Path] | None, typer.Option("--disk", help="Disk directory (repeat); recorded at first start.")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="HOST:PORT to listen on (default: server.address, 127.0.0.1:9000).")
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option("--domain", help="Enables virtual-hosted-style addressing: BUCKET.<domain>."),
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="Region reported to clients (default us-east-1).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Server processes: one primary (all writes) and N-1 read workers (see docs/operations.md).",
        ),
    ] = 1,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Serve the S3 API (creates the data directory on first start)."""
    import uvicorn

    from datawarehouse.api.s3.app import S3App
    from datawarehouse.api.s3.commitlink import CommitService
    from datawarehouse.api.s3.worker import InternalEndpoint
    from datawarehouse.cli.balance import ConnectionBoard
    from datawarehouse.cli.workers import SupervisedServer, Supervisor, WorkerSettings, exit_cleanly_on_sigterm
    from datawarehouse.cli.workers import server_config as server_config_for
    from datawarehouse.engine.changes import ChangeCounter

    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: 1 to {MAX_WORKERS} server processes")
    exit_cleanly_on_sigterm()
    # Flags win over dwh.toml [server] and DWH_SERVER_* variables, which win over the defaults.
    config = load_config(data_dir / "dwh.toml")
    settings = config.server
    settings = ServerConfig(
        address=address or settings.address,
        domain=domain or settings.domain,
        region=region or settings.region,
        lifecycle_interval=settings.lifecycle_interval,
        signature_v2=settings.signature_v2,
    )
    host, port = settings.host_port
    wh = open_for_serving(data_dir, disk)
    run_dir: Path | None = None
    audit: AuditLog | None = None
    forwarders: list[Forwarder] = []
    try:
        creds, created = credentials.load_or_create(wh.engine.datadir.keys.dir)
        wh.iam.set_root_credentials(creds)
        audit = AuditLog(wh, config.audit)
        forwarders = start_forwarders(audit.read_after, config.audit, wh.engine.datadir.root / "audit")
        listen = _listen(host, port)
        sockets = [listen]
        internal: InternalEndpoint | None = None
        supervisor: Supervisor | None = None
        if workers > 1:
            run_dir = Path(tempfile.mkdtemp(prefix="dwh-run-"))  # mode 0700: the Unix socket's home
            socket_path = str(run_dir / "primary.sock")
            token = secrets.token_urlsafe(32)
            sockets.append(_listen_unix(socket_path))
            commit_socket_path = str(run_dir / "commit.sock")
            commits = CommitService(_listen_unix(commit_socket_path), token, wh.commit_forwarded_put)
            internal = InternalEndpoint(socket_path, token, audit, wh.iam.note_key_use, wh.engine.now, commits)
            changes_path = run_dir / "changes"
            wh.engine.share_changes(ChangeCounter.create(changes_path))
            board_path = run_dir / "connections"
            ConnectionBoard.create(board_path, workers)
            supervisor = Supervisor(
                workers - 1,
                WorkerSettings(
                    data_dir=str(data_dir.absolute()),
                    listen_fd=listen.fileno(),
                    socket_path=socket_path,
                    commit_socket_path=commit_socket_path,
                    token=token,
                    root_access_key=creds.access_key,
                    root_secret_key=creds.secret_key,
                    domain=settings.domain or None,
                    region=settings.region,
                    board_path=str(board_path),
                    changes_path=str(changes_path),
                    signature_v2=settings.signature_v2,
                ),
                ConnectionBoard(board_path, 0),
            )
        app = S3App(
            wh,
            CallerDirectory(wh.iam).lookup,
            domain=settings.domain or None,
            region=settings.region,
            lifecycle_interval=settings.lifecycle_interval,
            audit=audit,
            internal=internal,
            signature_v2=settings.signature_v2,
        )
        endpoint = f"http://{host}:{port}"
        console.print(f"DataWarehouse S3 endpoint: {endpoint}  (data: {data_dir.absolute()})", highlight=False)
        if created:
            console.print(
                f"root access key: {creds.access_key}\nroot secret key: {creds.secret_key}\n"
                f"(shown once; kept in {wh.engine.datadir.keys.dir / credentials.FILE}, mode 0600)",
                highlight=False,
            )
        else:
            console.print(
                f"root access key: {creds.access_key} (secret in {wh.engine.datadir.keys.dir / credentials.FILE}"
                " or DWH_ROOT_SECRET_KEY)",
                highlight=False,
            )
        console.print(
            f"try: AWS_ACCESS_KEY_ID={creds.access_key} AWS_SECRET_ACCESS_KEY=... aws --endpoint-url {endpoint} s3 ls",
            highlight=False,
        )
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if workers > 1:
            console.print(f"serving with {workers} processes: this one and {workers - 1} read workers", highlight=False)
        server_config = server_config_for(app)
        # What start-up built (modules, SQLAlchemy's metadata, the key directories) lives as long
        # as the process: moved out of the collector's reach, a full collection no longer walks
        # it (one took ~60 ms, a pause of every request in flight).
        gc.collect()
        gc.freeze()
        server = (
            uvicorn.Server(server_config) if supervisor is None else SupervisedServer(server_config, supervisor, listen)
        )
        server.run(sockets=sockets)
    finally:
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
        for forwarder in forwarders:
            forwarder.stop()
        if audit is not None:
            audit.close()
        wh.iam.close()
        wh.close()
