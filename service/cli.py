"""Command line: ``brokercast [--config FILE ...]``.

Exit codes: 0 after a clean shutdown, 1 when the server cannot start or shutdown
timed out, 2 for an invalid setting (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from service import __version__
from service.app import App
from service.errors import ConfigError
from service.logs import configure_logging
from service.settings import Settings, load_settings

logger = logging.getLogger("brokercast.app")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="brokercast",
        description="Broadcast Kafka topics and Redis streams to websocket clients.",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="settings file (TOML, YAML or JSON); repeat to layer several, later "
        "files win; default: the comma-separated BROKERCAST_CONFIG",
    )
    parser.add_argument("--version", action="version", version=__version__)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run brokercast until SIGTERM or SIGINT and return the exit code."""
    # A signal before the event loop exists stops start-up quietly; nothing has
    # been opened yet that needs closing.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_before_start)
    args = parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"brokercast: {error}", file=sys.stderr)
        return EXIT_CONFIG

    configure_logging(settings.id, settings.log_level, settings.log_format)
    with _runner() as runner:
        code = runner.run(_serve(settings))
    # The loop's handlers are gone now; a late second signal must not turn a
    # clean shutdown into death by signal.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    return code


def _exit_before_start(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_OK)


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    app = App(settings)
    try:
        await app.start()
    except OSError as error:
        logger.error(
            "cannot listen on %s:%s: %s", settings.host, settings.port, error.strerror
        )
        await app.stop()
        return EXIT_FAILED

    await stop.wait()
    logger.info("shutdown requested")
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _log_repeated_signal)
    complete = await app.stop()
    return EXIT_OK if complete else EXIT_FAILED


def _log_repeated_signal() -> None:
    logger.info("shutdown already in progress")


def run() -> None:
    """Entry point of the ``brokercast`` console script."""
    raise SystemExit(main())
