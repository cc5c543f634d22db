"""An optimizer drives a reactor under a lock while a monitor prints every event.

Halfway through, a maintenance task (priority 0) preempts the optimizer (priority 1) to
calibrate the reactor. The optimizer learns it on leaving its `with` block (LockLost),
waits in the queue until maintenance is done, and resumes where it stopped.

Run it with `bash examples/python/run.sh` (which installs the package first).
"""

from __future__ import annotations

import sys
import threading
import time

import interlock

STEPS = 6
REACTOR = "reactor-1"


def say(line: str) -> None:
    """One whole line per write, so that lines from several threads never interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def monitor(events: interlock.Subscription) -> None:
    """What a lab GUI would show; the stream ends when the engine closes."""
    for ev in events:
        who = f" by {ev.session_name}" if ev.session_name else ""
        extra = "".join(
            f" {k}={v}" for k, v in [("fence", ev.fence), ("position", ev.position), ("reason", ev.reason)] if v is not None
        )
        say(f"  monitor | {ev.kind:<15} {ev.resource or '-':<10}{who}{extra}")


def drive(eng: interlock.Engine, lease: interlock.Lease, step: int) -> None:
    """One step of the experiment. The reactor's driver accepts a command only with the
    fence of a current lease, so a holder that lost its lock cannot steer it."""
    accepted = eng.check_fence(REACTOR, lease.fence)
    say(f"optimizer | step {step}: set temperature (fence {lease.fence}, accepted={accepted})")
    time.sleep(0.05)


def optimizer(eng: interlock.Engine, halfway: threading.Event) -> int:
    """Runs every step under the lock; returns how many times the lock was lost."""
    lost = 0
    interrupted = threading.Event()

    def on_lost(lease: interlock.Lease, why: str) -> None:  # on the engine's dispatcher thread
        say(f"optimizer | on_lost: {lease!r} ({why})")
        interrupted.set()

    with eng.session("Optimizer", metadata={"user": "ana", "app": "optimizer.py"}) as s:
        step = 0
        while step < STEPS:
            try:
                with s.lock(REACTOR, priority=1, timeout=10.0, on_lost=on_lost) as lease:
                    while step < STEPS and lease.valid:
                        drive(eng, lease, step)
                        step += 1
                        if step == STEPS // 2:
                            halfway.set()
                            interrupted.wait(10.0)  # a long measurement; maintenance cuts in
            except interlock.LockLost as e:
                lost += 1
                say(f"optimizer | {e}; queueing to resume at step {step}")
    return lost


def maintenance(eng: interlock.Engine, halfway: threading.Event) -> None:
    halfway.wait()
    with eng.session("Maintenance") as s:
        with s.lock(REACTOR, priority=0, preempt=True, reason="calibration"):
            say("maintenance | calibrating the reactor")
            time.sleep(0.2)
        say("maintenance | done")


def main() -> int:
    with interlock.Engine() as eng:
        watcher = threading.Thread(target=monitor, args=(eng.subscribe(),))
        watcher.start()
        halfway = threading.Event()
        service = threading.Thread(target=maintenance, args=(eng, halfway))
        service.start()
        lost = optimizer(eng, halfway)
        service.join()
        preemptions = [e for e in eng.history(resource=REACTOR) if e.kind == "preempted"]
    watcher.join()
    print(f"optimizer finished {STEPS} steps; lost the lock {lost} time(s)")
    return 0 if lost == len(preemptions) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
