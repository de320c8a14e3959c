"""Allow ``python -m service``."""

import signal


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


# A signal while the modules below are still importing stops start-up quietly,
# because nothing has been opened yet; the command line replaces the handlers.
signal.signal(signal.SIGTERM, _exit_quietly)
signal.signal(signal.SIGINT, _exit_quietly)

from service.cli import main  # noqa: E402

raise SystemExit(main())
