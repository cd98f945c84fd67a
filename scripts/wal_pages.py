"""Which pages a worker turn writes on SQLite, run by hand (a measurement, not a test).

    .venv/bin/python scripts/wal_pages.py            # 4,000 runs, turns of 8

It submits the runs (1,000 per call), empties the WAL, then drives ``Engine.cycle`` the
way a worker with 8 slots does (each turn records 8 results and leases 8 runs) with
checkpoints off, and reads the WAL back: pages written per turn, by table or index
(SQLite's ``dbstat``). Every page in the WAL is copied into the file again by a
checkpoint, and at ``synchronous=FULL`` synced at the turn's COMMIT, so fewer is faster.
"""

from __future__ import annotations

import collections
import os
import struct
import sys
from pathlib import Path

from _noop_store import noop_store, reports

from mainspring.store import checkpoint

N = 4000
SLOTS = 8


def main() -> None:
    checkpoint.CHECKPOINT_EVENTS = 10**12  # no background copy: the WAL keeps every page written
    app, path = noop_store("wal_pages.db", N, "normal")
    store = app.engine.store
    con = store._con()  # type: ignore[attr-defined]
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA wal_autocheckpoint = 0")  # nor SQLite's own (this thread's connection)
    turns, finished = 0, []
    while True:
        res = app.engine.cycle("w", ["noop"], None, finished, SLOTS, 30.0, housekeeping=False)
        turns += 1
        if not res.leased and not finished:
            break
        finished = reports(res.leased)
    wal = Path(f"{path}-wal").read_bytes()
    page_size = struct.unpack(">I", wal[8:12])[0]
    frame = 24 + page_size
    pages = [struct.unpack(">I", wal[o : o + 4])[0] for o in range(32, len(wal) - frame + 1, frame)]
    owner = dict((p, name) for name, p in con.execute("SELECT name, pageno FROM dbstat"))
    by_owner = collections.Counter(owner.get(p, "?") for p in pages)
    print(f"{N} runs, {turns} turns of up to {SLOTS}: {len(pages) / turns:.1f} pages per turn")
    for name, count in by_owner.most_common():
        print(f"  {count / turns:6.2f}  {name}")
    app.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.rmdir(path.parent)


if __name__ == "__main__":
    sys.exit(main())
