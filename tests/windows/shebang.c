/* A test tool of the Windows lane, never in the zip: Windows has no "#!" line, so a Python script
 * that the tests hand to the gateway as a program (the fake cloudflared) runs through a copy of
 * this exe. NAME.exe runs NAME.py beside it with the interpreter named on its first line
 * ("#!C:\...\python.exe"), passes its own arguments on, waits, and exits with the script's code.
 * Ctrl-C reaches both through their shared console: this exe lets the script decide (as a
 * shebang'd script's interpreter would be the only process on POSIX). The script gets this exe's
 * pid in SHEBANG_PID: the pid its starter knows.
 *
 * Built by .ci/windows-lane: x86_64-w64-mingw32-gcc -municode -O2 -s -o shebang.exe shebang.c
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <stdio.h>
#include <wchar.h>

#define LONG_PATH 32768

static BOOL WINAPI let_the_script_decide(DWORD event) {
    (void)event;
    return TRUE;
}

static int fail(const wchar_t *what) {
    fwprintf(stderr, L"shebang: %ls (Windows error %lu)\n", what, GetLastError());
    return 127;
}

int wmain(void) {
    static wchar_t script[LONG_PATH], python[LONG_PATH], line[3 * LONG_PATH];
    static char first[LONG_PATH];
    DWORD size = GetModuleFileNameW(NULL, script, LONG_PATH);
    if (size < 4 || size >= LONG_PATH) return fail(L"cannot tell where this program is");
    wcscpy(script + size - 4, L".py");
    FILE *f = _wfopen(script, L"rb");
    if (f == NULL) return fail(L"no script beside this program");
    if (fgets(first, sizeof first, f) == NULL || first[0] != '#' || first[1] != '!') {
        fclose(f);
        return fail(L"the script's first line is not #!INTERPRETER");
    }
    fclose(f);
    first[strcspn(first, "\r\n")] = '\0';
    if (MultiByteToWideChar(CP_UTF8, 0, first + 2, -1, python, LONG_PATH) == 0)
        return fail(L"the interpreter's path is not UTF-8");
    /* our own arguments: the command line after argv[0] */
    const wchar_t *rest = GetCommandLineW();
    if (*rest == L'"') {
        rest = wcschr(rest + 1, L'"');
        rest = rest ? rest + 1 : L"";
    } else {
        while (*rest && *rest != L' ' && *rest != L'\t') rest++;
    }
    swprintf(line, 3 * LONG_PATH, L"\"%ls\" \"%ls\"%ls", python, script, rest);
    wchar_t me[16];
    swprintf(me, 16, L"%lu", GetCurrentProcessId());
    SetEnvironmentVariableW(L"SHEBANG_PID", me);  /* the script may say which pid its starter knows */
    STARTUPINFOW start = {0};
    PROCESS_INFORMATION run = {0};
    start.cb = sizeof start;
    if (!CreateProcessW(python, line, NULL, NULL, TRUE, 0, NULL, NULL, &start, &run))
        return fail(L"cannot start the interpreter");
    SetConsoleCtrlHandler(let_the_script_decide, TRUE);  /* after the start: a handler is not inherited */
    WaitForSingleObject(run.hProcess, INFINITE);
    DWORD code = 1;
    GetExitCodeProcess(run.hProcess, &code);
    CloseHandle(run.hThread);
    CloseHandle(run.hProcess);
    return (int)code;
}
