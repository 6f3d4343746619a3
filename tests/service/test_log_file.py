"""The service log file: one line per record, rotated at its size limit with its backups, and a
restarted service goes on counting from the size already on disk."""
from __future__ import annotations

import logging

from service.daemon import LogFile


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def test_lines_rotate_at_the_limit_and_keep_the_backups(tmp_path):
    path = tmp_path / "service.log"
    handler = LogFile(path, maxBytes=400, backupCount=2, encoding="utf-8")
    log = _logger(handler, "test.logfile.rotate")
    for i in range(30):
        log.info("message %02d café %s", i, "x" * 40)      # 60 octets a line, é is two
    handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["service.log", "service.log.1", "service.log.2"]
    assert all(0 < (tmp_path / f).stat().st_size <= 400 for f in files)
    newest = path.read_text(encoding="utf-8").splitlines()
    assert newest[-1] == "INFO message 29 café " + "x" * 40
    older = (tmp_path / "service.log.1").read_text(encoding="utf-8").splitlines()
    assert int(older[-1].split()[2]) + 1 == int(newest[0].split()[2])   # nothing lost between files


def test_a_restart_counts_from_the_size_on_disk(tmp_path):
    path = tmp_path / "service.log"
    path.write_text("x" * 390 + "\n", encoding="utf-8")            # left by the previous run
    handler = LogFile(path, maxBytes=400, backupCount=1, encoding="utf-8")
    log = _logger(handler, "test.logfile.restart")
    log.info("the first line of this run")
    handler.close()
    assert (tmp_path / "service.log.1").read_text(encoding="utf-8") == "x" * 390 + "\n"
    assert path.read_text(encoding="utf-8") == "INFO the first line of this run\n"
