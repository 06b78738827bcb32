"""``dwh serve``: the S3 endpoint on embedded defaults."""

from __future__ import annotations

import gc
import logging
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
        typer.Option("--workers", help="Server processes (only 1 is supported: one process owns a data directory)."),
    ] = 1,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Serve the S3 API (creates the data directory on first start)."""
    import uvicorn

    from datawarehouse.api.s3.app import S3App

    if workers != 1:
        raise ConfigError(
            "--workers: only 1 is supported (one process owns a data directory; it uses every core "
            "through threads) — see docs/operations.md"
        )
    # Flags win over dwh.toml [server] and DWH_SERVER_* variables, which win over the defaults.
    config = load_config(data_dir / "dwh.toml")
    settings = config.server
    settings = ServerConfig(
        address=address or settings.address,
        domain=domain or settings.domain,
        region=region or settings.region,
        lifecycle_interval=settings.lifecycle_interval,
    )
    host, port = settings.host_port
    wh = open_for_serving(data_dir, disk)
    audit: AuditLog | None = None
    forwarders: list[Forwarder] = []
    try:
        creds, created = credentials.load_or_create(wh.engine.datadir.keys.dir)
        wh.iam.set_root_credentials(creds)
        audit = AuditLog(wh, config.audit)
        forwarders = start_forwarders(audit.read_after, config.audit, wh.engine.datadir.root / "audit")
        app = S3App(
            wh,
            CallerDirectory(wh.iam).lookup,
            domain=settings.domain or None,
            region=settings.region,
            lifecycle_interval=settings.lifecycle_interval,
            audit=audit,
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
        server_config = uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="warning",
            timeout_graceful_shutdown=30,
            access_log=False,
        )
        # What start-up built (modules, SQLAlchemy's metadata, the key directories) lives as long
        # as the process: moved out of the collector's reach, a full collection no longer walks
        # it (one took ~60 ms, a pause of every request in flight).
        gc.collect()
        gc.freeze()
        uvicorn.Server(server_config).run()
    finally:
        for forwarder in forwarders:
            forwarder.stop()
        if audit is not None:
            audit.close()
        wh.iam.close()
        wh.close()
