"""The ``mqttgate`` command: serve, check-config, passwd, version."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger("mqttgate")


def _version() -> str:
    try:
        return metadata.version("mqttgate")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _setup_logging(level: str, fmt: str) -> None:
    from mqttgate.proxy.audit import configure_logging

    configure_logging(level, fmt)


def _tls_file_fault(tls: Any) -> tuple[str, str]:
    """Which TLS file of a listener cannot be used, and why, as (field, message)."""
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        x509.load_pem_x509_certificates(Path(tls.cert_file).read_bytes())
    except OSError as exc:
        return "cert_file", f"cannot be read: {exc.strerror}"
    except ValueError:
        return "cert_file", "not a PEM certificate chain"
    try:
        load_pem_private_key(Path(tls.key_file).read_bytes(), password=None)
    except OSError as exc:
        return "key_file", f"cannot be read: {exc.strerror}"
    except (ValueError, TypeError):
        return "key_file", "not an unencrypted PEM private key"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        return "key_file", f"does not match cert_file: {exc}"
    return "ca_file", "not a PEM CA certificate"


def _tls_problems(config: Any) -> list[Any]:
    """Listeners whose certificate, key or CA files exist but cannot be loaded (not PEM, a
    key that does not match the certificate): ``serve`` would refuse to start on them."""
    import ssl

    from mqttgate.policy import Problem, load_yaml
    from mqttgate.proxy.tls import server_context

    problems = []
    lines = None
    for index, listener in enumerate(config.listeners):
        try:
            server_context(listener.tls)
        except (OSError, ssl.SSLError, ValueError) as exc:
            if lines is None:
                _data, lines = load_yaml(config.source)
            name, message = _tls_file_fault(listener.tls)
            if name == "ca_file":
                message = f"{message}: {exc}"
            key = ("listeners", index, "tls", name)
            problems.append(
                Problem(
                    str(config.source),
                    lines.line(key) or lines.line(key[:3]),
                    f"listeners[{index}].tls.{name}",
                    message,
                )
            )
    return problems


def cmd_check_config(path: str) -> int:
    from mqttgate.policy import check_policy_file
    from mqttgate.proxy.config import ConfigError, load_config

    problems = []
    try:
        config = load_config(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    else:
        problems.extend(_tls_problems(config))
        problems.extend(check_policy_file(config.policy.file))
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{path}: OK")
    return 0


async def _serve(config_path: Path, banner: str | None, *, worker: int | None = None) -> int:
    """Run one proxy process; ``worker``: index when forked by the multi-worker supervisor
    (then listeners use SO_REUSEPORT and the supervisor serves the operations endpoint)."""
    from mqttgate.proxy.config import load_config
    from mqttgate.proxy.http import start_http_server
    from mqttgate.proxy.reload import FileWatcher, install_signal_handlers
    from mqttgate.proxy.server import Server

    config = load_config(config_path)
    server = Server(config)
    sockets = None
    if worker is not None:
        from mqttgate.proxy.workers import reuseport_socket

        sockets = {lc.name: reuseport_socket(lc.host, lc.port) for lc in config.listeners}
    await server.start(sockets)
    loop = asyncio.get_running_loop()

    async def readiness() -> dict[str, bool]:
        await server.check_upstream()
        return server.readiness()

    http = None
    if config.metrics.bind is not None and worker is None:
        http = await start_http_server(
            config.metrics.bind, registry=server.metrics.registry, readiness=readiness
        )
        log.info("operations endpoint on http://%s/metrics", config.metrics.bind)

    def reload() -> None:
        ok_policy = server.reload_policy()
        ok_tls = server.reload_tls()
        log.info(
            "reload: policy %s, TLS %s",
            "ok" if ok_policy else "kept old",
            "ok" if ok_tls else "kept old",
        )

    def reload_policy() -> None:
        ok = server.reload_policy()
        log.info("users file changed: policy %s", "ok" if ok else "kept old")

    async def stop() -> None:
        log.info("shutting down (grace %.1fs)", config.shutdown_grace)
        for w in (watcher, tls_watcher):
            if w is not None:
                await w.stop()
        if http is not None:
            http.close()
        server.flush_metrics()
        await server.shutdown(config.shutdown_grace)

    def reload_tls() -> None:
        log.info("TLS files changed: %s", "reloaded" if server.reload_tls() else "kept old")

    watcher = tls_watcher = None
    if config.policy.reload == "watch":
        watcher = FileWatcher([config.policy.file], reload_policy)
        watcher.start()
        # Renewed certificates (cert-manager rewrites the Secret) are served without a signal.
        tls_files = sorted(
            {
                str(path)
                for lc in config.listeners
                for path in (lc.tls.cert_file, lc.tls.key_file, lc.tls.ca_file)
                if path is not None
            }
        )
        tls_watcher = FileWatcher(tls_files, reload_tls)
        tls_watcher.start()
    uninstall = None
    # SIGHUP always reloads the users file and the TLS files (docs/design.md).
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        uninstall = install_signal_handlers(loop, reload, stop)
    ports = server.ports()
    who = "" if worker is None else f" (worker {worker})"
    log.info(
        "mqttgate %s ready%s: %s", _version(), who, ", ".join(f"{n}={p}" for n, p in ports.items())
    )
    if banner is not None:
        print(banner, flush=True)
    try:
        await server.serve_forever()
    finally:
        if uninstall is not None:
            uninstall()
    return 0


def cmd_serve(config: str | None, state_dir: str | None, port: int) -> int:
    from mqttgate.policy import PolicyLoadError
    from mqttgate.proxy.config import ConfigError, load_config
    from mqttgate.proxy.server import new_event_loop

    banner = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if config is None:
        from mqttgate.proxy import quickstart

        if state_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="mqttgate-quickstart-")
            folder = Path(tmp.name)
        else:
            folder = Path(state_dir).resolve()
        path, password = quickstart.prepare(folder, port=port)
        banner = quickstart.instructions(folder, password, port=port)
    else:
        path = Path(config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    _setup_logging(cfg.log.level, cfg.log.format)
    from mqttgate.proxy.workers import resolve_workers

    workers = resolve_workers(cfg.workers)
    if workers > 1 and cfg.upstream.embedded:
        log.warning("workers: %d ignored: the embedded broker runs in one process", workers)
        workers = 1
    if workers > 1:
        return _serve_workers(path, cfg, workers)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(_serve(path, banner))
    except PolicyLoadError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if tmp is not None:
            tmp.cleanup()


def _serve_workers(path: Path, cfg: Any, workers: int) -> int:
    """N forked workers sharing the listen ports; the parent serves /metrics for all."""
    from mqttgate.proxy.http import start_http_server, tcp_probe
    from mqttgate.proxy.server import new_event_loop
    from mqttgate.proxy.workers import Supervisor, prepare_multiprocess_dir, run_workers

    multiprocess_dir = prepare_multiprocess_dir()  # before any metric exists

    def worker_main(index: int) -> int:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(_serve(path, None, worker=index))

    async def parent_main(supervisor: Supervisor) -> None:
        if cfg.metrics.bind is None:
            return

        async def readiness() -> dict[str, bool]:
            upstream = await tcp_probe(
                cfg.upstream.host, cfg.upstream.port, cfg.upstream.connect_timeout
            )
            return {"workers": supervisor.alive() == workers, "upstream": upstream}

        http = await start_http_server(
            cfg.metrics.bind,
            registry=None,
            readiness=readiness,
            multiprocess_dir=supervisor.multiprocess_dir,
        )
        try:
            await asyncio.Event().wait()
        finally:
            http.close()

    log.info("starting %d workers", workers)
    return run_workers(
        workers,
        worker_main,
        parent_main=parent_main,
        multiprocess_dir=multiprocess_dir,
        stop_timeout=cfg.shutdown_grace + 5,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mqttgate",
        description="TLS-terminating MQTT proxy with authentication and per-topic permissions.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the proxy (no config: quickstart)")
    p_serve.add_argument("--config", default=os.environ.get("MQTTGATE_CONFIG") or None)
    p_serve.add_argument("--state-dir", help="quickstart: keep generated files here")
    p_serve.add_argument("--port", type=int, default=8883, help="quickstart: listen port")
    p_check = sub.add_parser("check-config", help="validate config and users file")
    p_check.add_argument("--config", default=os.environ.get("MQTTGATE_CONFIG") or None)
    p_passwd = sub.add_parser("passwd", help="hash a password for the users file")
    p_passwd.add_argument("username", nargs="?")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args.config, args.state_dir, args.port)
    if args.command == "check-config":
        if not args.config:
            parser.error("check-config needs --config FILE (or MQTTGATE_CONFIG)")
        return cmd_check_config(args.config)
    if args.command == "passwd":
        from mqttgate.policy.passwd import main as passwd_main

        return passwd_main([args.username] if args.username else [])
    print(f"mqttgate {_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
