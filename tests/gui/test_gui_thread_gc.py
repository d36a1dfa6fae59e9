"""Python's cyclic garbage is collected on the GUI thread, never by a worker."""

import gc
import threading

from segstudio.gui import gui_thread_gc


class _Cycle:
    def __init__(self, log):
        self.me = self
        self.log = log

    def __del__(self):
        self.log.append(threading.current_thread() is threading.main_thread())


def test_automatic_collection_is_off_and_the_timer_collects_on_the_gui_thread(qtbot, qapp):
    collector = gui_thread_gc.install(qapp)
    assert gui_thread_gc.install(qapp) is collector  # one per application
    assert not gc.isenabled()
    log = []
    _Cycle(log)  # garbage only the cyclic collector can free

    def allocate():  # what a worker does: allocate a lot, which used to trigger a collection there
        held = [[] for _ in range(5 * gc.get_threshold()[0])]
        assert held
    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert log == []  # the worker's allocations collected nothing
    kept = [[] for _ in range(2 * gc.get_threshold()[0])]  # past the first generation's threshold
    assert log == []  # nothing collected automatically, even on the GUI thread
    assert collector.timer.isActive() and collector.thread() is qapp.thread()
    qtbot.wait(2 * gui_thread_gc.INTERVAL_MS + 200)  # the timer's collection, on the GUI thread
    assert log == [True]
    assert len(kept) > 0
