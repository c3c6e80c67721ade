"""Running the check's steps: each a subprocess with a time box, its output streamed to a file, so
that a failing, hanging or slow step never stops the next and leaves what it printed.

Steps of the same `group` (a name) run concurrently; groups run one after another, in the order
their first step appears. A step's time box is also cut to the run's overall deadline.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

OK, FAILED, TIMEOUT, NOT_RUN = "ok", "FAILED", "TIMEOUT", "not run"
POLL_S = 0.05


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    group: str | None = None  # steps of one group run concurrently
    env: dict = field(default_factory=dict)  # added to the environment
    note: str = ""  # shown in the summary (e.g. "dry run: stand-in for ...")


@dataclass
class Outcome:
    step: Step
    status: str
    returncode: int | None
    seconds: float
    output: str  # stdout and stderr, interleaved


def _groups(steps: list[Step]) -> list[list[Step]]:
    order: list[list[Step]] = []
    by_group: dict[str, list[Step]] = {}
    for step in steps:
        if step.group is None:
            order.append([step])
        elif step.group in by_group:
            by_group[step.group].append(step)
        else:
            by_group[step.group] = [step]
            order.append(by_group[step.group])
    return order


def _stop(process: subprocess.Popen) -> None:
    """Kill the step and every process it started (its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_steps(steps: list[Step], scratch: Path, deadline: float, cwd: Path, progress=print) -> list[Outcome]:
    """Run every step (time.monotonic() deadline for the whole run); outputs go to scratch/<name>.log.
    A step whose group starts past the deadline is NOT_RUN."""
    outcomes: list[Outcome] = []
    for group in _groups(steps):
        if time.monotonic() >= deadline:
            outcomes += [Outcome(s, NOT_RUN, None, 0.0, "the run's deadline had passed") for s in group]
            progress(f"[gpu-check] {', '.join(s.name for s in group)}: not run (deadline)")
            continue
        started = time.monotonic()
        running, finished = [], {}
        for step in group:
            log = open(scratch / f"{step.name}.log", "wb")
            env = {**os.environ, **step.env}
            progress(f"[gpu-check] {step.name}: {' '.join(step.argv)} (time box {step.timeout_s:.0f} s)")
            try:
                process = subprocess.Popen(step.argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                           start_new_session=True)
            except OSError as exc:  # e.g. the program is not installed
                log.write(f"cannot start {step.argv[0]}: {exc}\n".encode())
                process = None
                finished[step.name] = (FAILED, None, 0.0)
                log.close()
            running.append((step, process, log, min(started + step.timeout_s, deadline)))
        while len(finished) < len(running):
            time.sleep(POLL_S)
            for step, process, log, stop_at in running:
                if step.name in finished:
                    continue
                returncode = process.poll()
                if returncode is None and time.monotonic() < stop_at:
                    continue
                if returncode is None:
                    _stop(process)
                    status = TIMEOUT
                else:
                    status = OK if returncode == 0 else FAILED
                log.close()
                finished[step.name] = (status, returncode, time.monotonic() - started)
                progress(f"[gpu-check] {step.name}: {status} after {finished[step.name][2]:.1f} s")
        for step, *_ in running:
            status, returncode, seconds = finished[step.name]
            output = (scratch / f"{step.name}.log").read_text(errors="replace")
            outcomes.append(Outcome(step, status, returncode, seconds, output))
    return outcomes
