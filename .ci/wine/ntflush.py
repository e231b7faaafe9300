"""Wine 8.0 gap (harness only, applied to the lane's own unzipped copy, never to the zip):
PostgreSQL 16+ and psycopg-binary's libpq.dll look up ntdll's NtFlushBuffersFileEx at start
(win32ntdll.c); Wine 8.0's ntdll has only NtFlushBuffersFile, so initdb and postgres refuse to
run. The lookup's string is pointed at NtYieldExecution (same x64 convention, returns success):
fdatasync() becomes a no-op, which only wal_sync_method=fdatasync would use (Windows' default is
open_datasync).

    python ntflush.py FOLDER   # patches every .exe and .dll below FOLDER; prints how many
"""

import pathlib
import sys

OLD = b"\x00NtFlushBuffersFileEx\x00"  # the lookup's string (pg_NtFlushBuffersFileEx, a symbol, is left alone)
NEW = b"\x00NtYieldExecution\x00\x00\x00\x00\x00"
assert len(OLD) == len(NEW)

count = 0
for path in pathlib.Path(sys.argv[1]).rglob("*"):
    if path.suffix.lower() in (".exe", ".dll") and OLD in (data := path.read_bytes()):
        path.write_bytes(data.replace(OLD, NEW))
        count += 1
print(f"ntflush: patched {count} PostgreSQL/libpq binaries")
