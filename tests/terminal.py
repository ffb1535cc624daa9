"""Run a Python script in a pseudo-terminal and answer its prompts, as a person at a terminal would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys


def converse(script: str, args: list[str], answers: list[tuple[bytes, bytes]], quiet_s: float = 30) -> str:
    """Everything the script wrote; each ``(prompt, answer)`` is typed once, when ``prompt`` shows.

    A script silent for ``quiet_s`` seconds is killed (a prompt that never shows would wait forever).
    """
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "160", "TERM": "dumb"},
    )
    os.close(follower)
    seen = b""
    waiting = list(answers)
    searched = 0  # where the next prompt is looked for: each prompt is answered once
    try:
        while True:  # until the script closes the terminal
            if not select.select([leader], [], [], quiet_s)[0]:
                proc.kill()
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the script ended
                break
            if not chunk:
                break
            seen += chunk
            at = seen.find(waiting[0][0], searched) if waiting else -1
            if at >= 0:
                prompt, answer = waiting.pop(0)
                searched = at + len(prompt)
                os.write(leader, answer)
    finally:
        proc.wait(timeout=60)
        os.close(leader)
    return seen.decode(errors="replace")
