#!/usr/bin/env python3
"""The test tape system's "robot": the program XRootD's prepare plug-in runs for the tape SE.

tests/infra/xrootd.sh copies this file beside its ``tape_robot.json`` (tape and buffer
directories, recall delay) and starts the tape-with-staging server with
``ofs.preplib libXrdOfsPrepGPI.so -admit all -run <this file>``. The plug-in calls it with
``[-a] [-C] [-n fin|rdy] [-p N] [-w] -- REQID REQNAME [PATH ...]`` where REQNAME is ``stage``,
``prep``, ``query``, ``evict`` or ``cancel`` and PATH are the logical (client) paths.

- The server exports only the **disk buffer**; the **tape** is a directory beside it that the
  server does not serve. A file only on tape cannot be read or stat-ed through XRootD.
- ``stage``/``prep``: each file on tape is recalled by a detached process that waits the delay,
  copies it into the buffer under a temporary name and renames it; a file not on tape is recorded
  with the error "no such file on tape".
- ``query`` (``xrdfs query prepare REQID PATH...``): prints the JSON answer EOS-CTA gives
  (``{"request_id", "responses": [{"path", "path_exists", "on_tape", "online", "requested",
  "has_reqid", "error_text"}]}``), which is what bring-online clients (FTS, the DDM agent) poll.
- ``evict`` (``xrdfs prepare -e``): migrates a buffer-only file to tape first (the "write then
  migrate" of a real tape system), then removes the buffer copy. Tests use it to put files on tape.
- ``cancel``: forgets the request (a running recall still completes).

Only the standard library; it runs as the server's user (xrootd), which owns both directories.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MAX_PATHS = 1024
"""Paths accepted in one call (the plug-in's -maxfiles is lower)."""


def _inside(root: Path, path: str) -> Path:
    """``path`` under ``root``; refuses ``..`` so a client path never leaves the directory."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if any(p in (".", "..") for p in parts) or not parts:
        raise ValueError(f"bad path {path!r}")
    return root.joinpath(*parts)


def _same(buffered: Path, taped: Path) -> bool:
    """The tape copy is that of the buffer copy (not one of an older file under the same name)."""
    if not taped.is_file():
        return False
    b, t = buffered.stat(), taped.stat()
    return b.st_size == t.st_size and t.st_mtime >= b.st_mtime


class Robot:
    """One invocation's view of the tape, the buffer and the request records."""

    def __init__(self, *, tape: Path, buffer: Path, state: Path, delay_s: float) -> None:
        self.tape, self.buffer, self.state, self.delay_s = tape, buffer, state, delay_s
        self.state.mkdir(parents=True, exist_ok=True)

    def _record_path(self, path: str) -> Path:
        return self.state / (hashlib.sha256(path.encode()).hexdigest() + ".json")

    def record(self, path: str) -> dict[str, object]:
        try:
            return json.loads(self._record_path(path).read_text())
        except (OSError, ValueError):
            return {}

    def write_record(self, path: str, **fields: object) -> None:
        target = self._record_path(path)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"path": path, **fields}))
        os.replace(tmp, target)

    def stage(self, reqid: str, paths: list[str]) -> None:
        for path in paths:
            if _inside(self.buffer, path).exists():
                self.write_record(path, reqid=reqid, requested=time.time(), error="")
                continue
            if not _inside(self.tape, path).is_file():
                self.write_record(path, reqid=reqid, requested=time.time(), error="no such file on tape")
                continue
            self.write_record(path, reqid=reqid, requested=time.time(), error="")
            subprocess.Popen(  # detached: the plug-in waits for this program's output to end
                [sys.executable, __file__, "--recall", path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    def recall(self, path: str) -> None:
        """The detached part of a stage: wait, copy tape -> buffer, rename."""
        time.sleep(self.delay_s)
        src, dst = _inside(self.tape, path), _inside(self.buffer, path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.recall-{os.getpid()}")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except OSError as exc:
            rec = {k: v for k, v in self.record(path).items() if k != "path"}
            self.write_record(path, **{**rec, "error": f"recall failed: {exc}"})
        finally:
            tmp.unlink(missing_ok=True)

    def query(self, reqid: str, paths: list[str]) -> dict[str, object]:
        responses = []
        for path in paths:
            rec = self.record(path)
            on_tape = _inside(self.tape, path).is_file()
            online = _inside(self.buffer, path).is_file()
            responses.append(
                {
                    "path": path,
                    "path_exists": on_tape or online,
                    "on_tape": on_tape,
                    "online": online,
                    "requested": bool(rec) and not online,
                    "has_reqid": rec.get("reqid") == reqid,
                    "error_text": str(rec.get("error", "")),
                }
            )
        return {"request_id": reqid, "responses": responses}

    def evict(self, paths: list[str]) -> None:
        for path in paths:
            src, dst = _inside(self.buffer, path), _inside(self.tape, path)
            if not src.is_file():
                continue
            if not _same(src, dst):  # migrate first: a file is never evicted before it is on tape
                dst.parent.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_name(f".{dst.name}.migrate-{os.getpid()}")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            src.unlink()
            self._record_path(path).unlink(missing_ok=True)


CONFIG = Path(__file__).with_name("tape_robot.json")
"""Beside this file: ``{"tape": DIR, "buffer": DIR, "state": DIR, "delay_s": SECONDS}`` (the
plug-in's ``-run`` takes a program without arguments)."""


def main(argv: list[str]) -> int:
    conf = json.loads(CONFIG.read_text())
    robot = Robot(
        tape=Path(conf["tape"]), buffer=Path(conf["buffer"]), state=Path(conf["state"]), delay_s=float(conf["delay_s"])
    )
    if argv[:1] == ["--recall"] and len(argv) == 2:
        robot.recall(argv[1])
        return 0
    request = argv[argv.index("--") + 1 :] if "--" in argv else []  # the plug-in's options are not needed
    if len(request) < 2:
        print("usage: tape_robot.py [plug-in options] -- REQID REQNAME [PATH ...]", file=sys.stderr)
        return 2
    reqid, name, paths = request[0], request[1], request[2 : 2 + MAX_PATHS]
    if name in ("stage", "prep"):
        robot.stage(reqid, paths)
    elif name == "query":
        print(json.dumps(robot.query(reqid, paths)))
    elif name == "evict":
        robot.evict(paths)
    return 0  # cancel: nothing queued here outlives the call


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
