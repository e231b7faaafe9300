"""Windows job objects: a process tree the gateway can prove.

Walking a tree by parent pid can reach unrelated processes once a pid is reused (a service
wrapper once listed csrss.exe and winlogon.exe as its service's children). A job object holds
exactly the processes started inside it, whatever their pids. Each server gets its own named job:

- `Local\\omen-gateway-<data folder hash>-<server>-<pid>`: one per run (a no-gap change runs two
  versions of a server at once), found again by name after a gateway restart from the recorded
  pid (same session; the boot task always runs in session 0);
- a server is created suspended, put in its job, then resumed: nothing it starts escapes the job;
- never JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: a gateway that crashes leaves the servers running;
- Windows destroys a job when its last handle closes, even with processes still in it, so the
  gateway duplicates a handle to the job into the server's root process: the job (and its name)
  lives as long as that process does, and a restarted gateway re-opens it;
- stop and account by the job: TerminateJobObject, CPU time and peak memory from
  QueryInformationJobObject, the member pids from its process list. Where no job can be had
  (a root that exited and left grandchildren, another session), pid + create time remain.

Structures and names are pure and contract-tested on any OS (x64 sizes); the calls run on Windows.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# winnt.h: JOBOBJECTINFOCLASS, limit flags, access rights
BASIC_ACCOUNTING, BASIC_PROCESS_ID_LIST, EXTENDED_LIMIT = 1, 3, 9
LIMIT_BREAKAWAY_OK, LIMIT_SILENT_BREAKAWAY_OK, LIMIT_KILL_ON_JOB_CLOSE = 0x00000800, 0x00001000, 0x00002000
JOB_OBJECT_ALL_ACCESS = 0x1F003F
PROCESS_TERMINATE, PROCESS_DUP_HANDLE, PROCESS_SET_QUOTA = 0x0001, 0x0040, 0x0100
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
DUPLICATE_SAME_ACCESS = 0x2
ERROR_ALREADY_EXISTS = 183
MAX_IDS = 1024  # member pids read at once (a server with more is still stopped whole by the job)
LARGE_INTEGER, DWORD, SIZE_T, ULONG_PTR = ctypes.c_int64, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_size_t


class BasicAccounting(ctypes.Structure):  # JOBOBJECT_BASIC_ACCOUNTING_INFORMATION
    _fields_ = [("TotalUserTime", LARGE_INTEGER), ("TotalKernelTime", LARGE_INTEGER),  # 100 ns units
                ("ThisPeriodTotalUserTime", LARGE_INTEGER), ("ThisPeriodTotalKernelTime", LARGE_INTEGER),
                ("TotalPageFaultCount", DWORD), ("TotalProcesses", DWORD), ("ActiveProcesses", DWORD),
                ("TotalTerminatedProcesses", DWORD)]


class BasicLimit(ctypes.Structure):  # JOBOBJECT_BASIC_LIMIT_INFORMATION
    _fields_ = [("PerProcessUserTimeLimit", LARGE_INTEGER), ("PerJobUserTimeLimit", LARGE_INTEGER),
                ("LimitFlags", DWORD), ("MinimumWorkingSetSize", SIZE_T), ("MaximumWorkingSetSize", SIZE_T),
                ("ActiveProcessLimit", DWORD), ("Affinity", ULONG_PTR), ("PriorityClass", DWORD),
                ("SchedulingClass", DWORD)]


class IoCounters(ctypes.Structure):  # IO_COUNTERS
    _fields_ = [(name, ctypes.c_uint64) for name in ("ReadOperationCount", "WriteOperationCount",
                                                       "OtherOperationCount", "ReadTransferCount",
                                                       "WriteTransferCount", "OtherTransferCount")]


class ExtendedLimit(ctypes.Structure):  # JOBOBJECT_EXTENDED_LIMIT_INFORMATION
    _fields_ = [("BasicLimitInformation", BasicLimit), ("IoInfo", IoCounters), ("ProcessMemoryLimit", SIZE_T),
                ("JobMemoryLimit", SIZE_T), ("PeakProcessMemoryUsed", SIZE_T), ("PeakJobMemoryUsed", SIZE_T)]


class ProcessIdList(ctypes.Structure):  # JOBOBJECT_BASIC_PROCESS_ID_LIST with room for MAX_IDS
    _fields_ = [("NumberOfAssignedProcesses", DWORD), ("NumberOfProcessIdsInList", DWORD),
                ("ProcessIdList", ULONG_PTR * MAX_IDS)]


def job_name(data_dir: Path, server: str, pid: int) -> str:
    """The job's name: per data folder (two gateways never share one), per server and per run (its
    root's pid). Names of kernel objects may hold any character but a backslash, up to MAX_PATH."""
    folder = hashlib.sha256(os.fsencode(str(data_dir)).lower()).hexdigest()[:12]
    safe = re.sub(r"[^a-z0-9-]", "-", server.lower())[:63]
    return f"Local\\omen-gateway-{folder}-{safe}-{pid}"


@dataclass(frozen=True)
class JobFigures:
    cpu_seconds: float  # user + kernel, of every process that ever ran in the job
    active: int  # processes running in it now
    total: int  # processes ever started in it
    peak_memory: int  # bytes: the job's peak committed memory


def figures(acct: BasicAccounting, ext: ExtendedLimit) -> JobFigures:
    return JobFigures((acct.TotalUserTime + acct.TotalKernelTime) / 1e7, acct.ActiveProcesses,
                      acct.TotalProcesses, int(ext.PeakJobMemoryUsed))


def member_pids(ids: ProcessIdList) -> list[int]:
    return [int(ids.ProcessIdList[i]) for i in range(min(ids.NumberOfProcessIdsInList, MAX_IDS))]


def survives_the_gateway(ext: ExtendedLimit) -> bool:
    """The contract: closing the gateway's handle must not end the servers."""
    return not ext.BasicLimitInformation.LimitFlags & LIMIT_KILL_ON_JOB_CLOSE


class JobError(OSError):
    pass


def _kernel32() -> Any:  # pragma: no cover - Windows only
    return ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]


class Job:  # pragma: no cover - runs on Windows only; its structures and names are tested anywhere
    def __init__(self, handle: int, name: str) -> None:
        self.handle, self.name = handle, name

    @classmethod
    def create(cls, name: str) -> Job:
        k32 = _kernel32()
        k32.CreateJobObjectW.restype = ctypes.c_void_p
        handle = k32.CreateJobObjectW(None, name)
        if not handle:
            raise JobError(ctypes.get_last_error(), f"cannot create job {name}")  # type: ignore[attr-defined]
        return cls(handle, name)

    @classmethod
    def open(cls, name: str) -> Job | None:
        k32 = _kernel32()
        k32.OpenJobObjectW.restype = ctypes.c_void_p
        handle = k32.OpenJobObjectW(JOB_OBJECT_ALL_ACCESS, False, name)
        return cls(handle, name) if handle else None

    def assign(self, pid: int) -> None:
        """Put `pid` (just started, before it starts children of its own) in the job, and give it a
        handle to the job so that the job outlives the gateway."""
        k32 = _kernel32()
        k32.OpenProcess.restype = ctypes.c_void_p
        proc = k32.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE | PROCESS_DUP_HANDLE, False, pid)
        if not proc:
            raise JobError(ctypes.get_last_error(), f"cannot open process {pid}")  # type: ignore[attr-defined]
        try:
            if not k32.AssignProcessToJobObject(ctypes.c_void_p(self.handle), ctypes.c_void_p(proc)):
                raise JobError(ctypes.get_last_error(), f"cannot put {pid} in {self.name}")  # type: ignore[attr-defined]
            kept = ctypes.c_void_p()
            k32.DuplicateHandle(ctypes.c_void_p(k32.GetCurrentProcess()), ctypes.c_void_p(self.handle),
                                ctypes.c_void_p(proc), ctypes.byref(kept), 0, False, DUPLICATE_SAME_ACCESS)
        finally:
            k32.CloseHandle(ctypes.c_void_p(proc))

    def _query(self, info_class: int, into: ctypes.Structure) -> None:
        if not _kernel32().QueryInformationJobObject(ctypes.c_void_p(self.handle), info_class, ctypes.byref(into),
                                                     ctypes.sizeof(into), None):
            raise JobError(ctypes.get_last_error(), f"cannot query {self.name}")  # type: ignore[attr-defined]

    def pids(self) -> list[int]:
        ids = ProcessIdList()
        self._query(BASIC_PROCESS_ID_LIST, ids)
        return member_pids(ids)

    def figures(self) -> JobFigures:
        acct, ext = BasicAccounting(), ExtendedLimit()
        self._query(BASIC_ACCOUNTING, acct)
        self._query(EXTENDED_LIMIT, ext)
        return figures(acct, ext)

    def terminate(self, code: int = 1) -> None:
        _kernel32().TerminateJobObject(ctypes.c_void_p(self.handle), code)

    def close(self) -> None:
        _kernel32().CloseHandle(ctypes.c_void_p(self.handle))
