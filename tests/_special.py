"""Named pipes for the tests that make sure nothing blocks on one."""

from __future__ import annotations

import os
import stat
import sys
import threading
import traceback


class FifoWatch:
    """A named pipe at ``path`` and a watchdog: should anything still be
    blocked opening it after ``after`` seconds, the watchdog opens it for
    writing (which lets the blocked open return) and records that it had to,
    so a test that would hang fails instead (``assert not watch.fired``).

    Use as a context manager; the pipe is removed on exit.
    """

    def __init__(self, path, after: float = 10.0):
        self.path = os.fspath(path)
        self.after = after
        self.fired = False
        self._stop = threading.Event()
        os.mkfifo(self.path)
        self.where = ""  # the main thread's stack when the watchdog fired
        self._main = threading.get_ident()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        if self._stop.wait(self.after):
            return
        while not self._stop.is_set():
            try:  # succeeds only while some reader has it open (or is opening it)
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                self._stop.wait(0.05)
                continue
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):  # replaced by a file: done
                os.close(fd)
                return
            self.fired = True
            self.where = "".join(traceback.format_stack(sys._current_frames()[self._main]))
            os.close(fd)

    def __enter__(self) -> FifoWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if os.path.lexists(self.path) and not os.path.isfile(self.path):
            os.unlink(self.path)
