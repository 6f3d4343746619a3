"""POP3 Service: ``python main.py`` opens the console; ``python main.py service`` runs the mail
service; ``python main.py winpop …`` is the command line (DESIGN §2)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.paths import default_data_dir

# Each command imports only its own side, below: the service process must never load Qt (gui/),
# and the console never loads the service (DESIGN §1), so these imports stay inside main().


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["service"] and args[1:2] in (["install"], ["uninstall"]):
        from service.install import main as install_main  # noqa: PLC0415 - the service side only
        return install_main(args[2:] + (["--uninstall"] if args[1] == "uninstall" else []))
    if args and args[0] == "service":
        from service.daemon import main as service_main  # noqa: PLC0415 - the service side only
        return service_main(args[1:])
    if args and args[0] == "winpop":
        from service.winpop import main as winpop_main  # noqa: PLC0415 - the command line only
        return winpop_main(args[1:])
    parser = argparse.ArgumentParser(prog="python main.py", description="Open the POP3 Service console. "
                                     "Other commands: 'service' (run the mail service), 'winpop' (command line).")
    parser.add_argument("--data-dir", type=Path, default=None, help="the service's data directory")
    opts = parser.parse_args(args)
    if not _has_display():
        print("python main.py: there is no display to open the console on (DISPLAY and WAYLAND_DISPLAY are "
              "not set).\nEither log in over SSH with X forwarding (ssh -X) and run it again, or run the mail "
              "service without the console, 'python3 main.py service', and administer it with 'winpop' "
              "('python3 main.py winpop help').", file=sys.stderr)
        return 2
    from gui.app import run_console  # noqa: PLC0415 - Qt only in the console process
    return run_console((opts.data_dir or default_data_dir()).expanduser())


def _has_display() -> bool:
    """Whether Qt can show a window: an X or Wayland display, or a platform chosen explicitly
    (QT_QPA_PLATFORM=offscreen, vnc ...). Checked before Qt, which would abort with its own message."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


if __name__ == "__main__":
    sys.exit(main())
