"""Windows: the listening TCP sockets and the pid that owns each, from iphlpapi's
GetExtendedTcpTable (TCP_TABLE_OWNER_PID_LISTENER), one call per address family: the same
table Linux's sock_diag gives (reconciler/platform/listening.py), read in one go for all the
checks on one beat, and the owner of a taken port without a sweep of every connection.

Windows does not say how full a listener's accept queue is: `room` is always True there, so a
hung server whose queue is full is found by the real connect every few minutes (observe.py),
not by the table. The row layouts are pure and tested on any OS; the call runs on Windows.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Any, NamedTuple

from reconciler.platform.listening import ListenTable, Listener

AF_INET, AF_INET6 = 2, 23  # Winsock's numbers (socket.AF_INET6 is 10 on Linux)
TCP_TABLE_OWNER_PID_LISTENER = 3
ERROR_INSUFFICIENT_BUFFER, NO_ERROR = 122, 0
# MIB_TCPROW_OWNER_PID: state, local address (network order), local port (network order in the
# low 16 bits), remote address, remote port, owning pid
ROW4 = struct.Struct("<I4sI4sII")
# MIB_TCP6ROW_OWNER_PID: local address, scope, port, remote address, scope, port, state, pid
ROW6 = struct.Struct("<16sII16sIIII")


class Row(NamedTuple):
    address: str
    port: int
    pid: int  # 0 where the OS does not say (Wine)


def _port(raw: int) -> int:
    return socket.ntohs(raw & 0xFFFF)


def parse(table: bytes, family: int) -> list[Row]:
    """A MIB_TCPTABLE_OWNER_PID (or its IPv6 twin) -> its rows: the entry count, then the rows."""
    (count,) = struct.unpack_from("<I", table, 0)
    rows: list[Row] = []
    if family == AF_INET:
        for i in range(count):
            _, local, port, _, _, pid = ROW4.unpack_from(table, 4 + i * ROW4.size)
            rows.append(Row(socket.inet_ntop(socket.AF_INET, local), _port(port), pid))
    else:
        for i in range(count):
            local, _, port, _, _, _, _, pid = ROW6.unpack_from(table, 4 + i * ROW6.size)
            rows.append(Row(socket.inet_ntop(socket.AF_INET6, local), _port(port), pid))
    return rows


def to_table(rows: list[Row]) -> ListenTable:
    found: dict[int, Listener] = {}
    for row in rows:
        seen = found.get(row.port)
        found[row.port] = Listener((seen.addresses if seen else frozenset()) | {row.address}, True)
    return found


def _read(family: int) -> bytes:  # pragma: no cover - Windows only
    iphlpapi: Any = ctypes.WinDLL("iphlpapi")  # type: ignore[attr-defined]
    size = ctypes.c_ulong(0)
    buffer = ctypes.create_string_buffer(0)
    for _ in range(5):  # the table can grow between the size query and the read
        code = iphlpapi.GetExtendedTcpTable(buffer, ctypes.byref(size), False, family,
                                            TCP_TABLE_OWNER_PID_LISTENER, 0)
        if code == NO_ERROR:
            return buffer.raw[:size.value]
        if code != ERROR_INSUFFICIENT_BUFFER:
            raise OSError(code, f"GetExtendedTcpTable failed ({code})")
        buffer = ctypes.create_string_buffer(size.value + 1024)
        size = ctypes.c_ulong(len(buffer))
    raise OSError(ERROR_INSUFFICIENT_BUFFER, "GetExtendedTcpTable kept growing")


def listeners() -> list[Row] | None:  # pragma: no cover - Windows only
    """Every listening TCP socket (IPv4 and IPv6), or None when the OS cannot be asked."""
    try:
        rows = parse(_read(AF_INET), AF_INET)
        try:
            rows += parse(_read(AF_INET6), AF_INET6)
        except OSError:
            pass  # no IPv6 stack: the v4 table stands alone
        return rows
    except (OSError, struct.error, ValueError, AttributeError):
        return None
