"""The few Slicer application pieces that VQSegLogic uses and the slicer-core wheel lacks, as small stand-ins.

Only what the logic really calls is here; everything else is real (MRML from the wheel, Slicer's own
ScriptedLoadableModule from a clone, see slicer_source.py, and the CLI child process):

  qt.QTimer      RunController._follow polls a run with a QTimer on the main thread (setInterval,
                 timeout.connect, start, stop; finishWithoutRun uses QTimer.singleShot). Here the timers
                 fire only inside EventLoop.processEvents, which the test calls: the poll still happens
                 on the test's (main) thread, every POLL_INTERVAL_MS, as Slicer's event loop would do it.
  qt.QSettings   chosenHomeFolder/setChosenHomeFolder read and write the home folder in the application
                 settings (contains, value, setValue). In memory here, so the user's settings are never read.
  slicer.app     reopenCase calls slicer.util.setSliceViewerLayers(fit=True), which asks
                 slicer.app.layoutManager(); like Slicer started without a main window, there is none.
                 Once slicer.app exists, Slicer's i18n.translate (behind VQSeg.py's `_()`) calls
                 slicer.app.translate(context, text): no translation is loaded, so the text comes back.
"""

import time
from typing import Callable, List


class Signal:
    """A Qt signal without arguments: connect(slot), emitted by the event loop."""

    def __init__(self):
        self._slots: List[Callable] = []

    def connect(self, slot: Callable) -> None:
        self._slots.append(slot)

    def emit(self) -> None:
        for slot in list(self._slots):
            slot()


class EventLoop:
    """The main thread's event loop, reduced to timers: processEvents fires the timers that are due."""

    def __init__(self, clock=time.monotonic, sleep=time.sleep):
        self.timers: list = []
        self._clock = clock
        self._sleep = sleep
        self.ticks = 0  # timer shots fired, for the test to see that the timer, not a blocking wait, drove a run

    def _fireDueTimers(self) -> None:
        now = self._clock()
        for timer in list(self.timers):
            if timer in self.timers and timer.isActive() and now >= timer._due:
                if timer.singleShotOnly:
                    timer.stop()
                else:
                    timer._due = now + timer.interval / 1000.0
                self.ticks += 1
                timer.timeout.emit()

    def processEvents(self, until: Callable[[], bool], timeoutSeconds: float, idleSeconds: float = 0.02) -> None:
        """Run the loop until `until()` is true; TimeoutError after timeoutSeconds (a run that never ends)."""
        deadline = self._clock() + timeoutSeconds
        while not until():
            if self._clock() > deadline:
                raise TimeoutError(f"still waiting after {timeoutSeconds} s")
            self._fireDueTimers()
            if not until():
                self._sleep(idleSeconds)

    def qtClasses(self) -> dict:
        """{"QTimer": ..., "QSettings": ...} bound to this loop (and to one in-memory settings store)."""
        loop = self
        store = {}

        class QTimer:
            """qt.QTimer as VQSegLib.runs uses it; fired by EventLoop.processEvents on the calling thread."""

            def __init__(self, parent=None):
                self.interval = 0
                self.singleShotOnly = False
                self.timeout = Signal()
                self._due = None

            def setInterval(self, milliseconds: int) -> None:
                self.interval = int(milliseconds)

            def setSingleShot(self, singleShot: bool) -> None:
                self.singleShotOnly = bool(singleShot)

            def start(self, milliseconds=None) -> None:
                if milliseconds is not None:
                    self.interval = int(milliseconds)
                self._due = loop._clock() + self.interval / 1000.0
                if self not in loop.timers:
                    loop.timers.append(self)

            def stop(self) -> None:
                self._due = None
                if self in loop.timers:
                    loop.timers.remove(self)

            def isActive(self) -> bool:
                return self._due is not None

            @staticmethod
            def singleShot(milliseconds: int, slot: Callable) -> None:
                timer = QTimer()
                timer.setSingleShot(True)
                timer.timeout.connect(slot)
                timer.start(milliseconds)

        class QSettings:
            """qt.QSettings for VQSegLib.home: one in-memory store shared by every instance, as Qt's file is."""

            def contains(self, key: str) -> bool:
                return key in store

            def value(self, key: str, default=None):
                return store.get(key, default)

            def setValue(self, key: str, value) -> None:
                store[key] = value

        return {"QTimer": QTimer, "QSettings": QSettings}


class Application:
    """slicer.app without a main window: no layout manager, so setSliceViewerLayers(fit=True) only sets the
    slice composite nodes' layers (the MRML part of it, which the test checks) and skips fitting views."""

    def layoutManager(self):
        return None

    def translate(self, context: str, text: str) -> str:
        return text  # the source language (English), as in a Slicer without a translation loaded
