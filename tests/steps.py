"""Running a task generator in a test and keeping what it yielded."""


def drain(steps):
    """Run *steps* to its end: (the items it yielded, its return value)."""
    yielded = []
    while True:
        try:
            yielded.append(next(steps))
        except StopIteration as stop:
            return yielded, stop.value
