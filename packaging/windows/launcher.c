/* "Start omen-gateway.exe" and "Stop omen-gateway.exe" of the Windows zip: one program under two
 * names. It runs the zip's own Python, `python\python.exe -m reconciler.launcher start|stop`
 * (reconciler/launcher.py does the work), with no console window, and returns its exit code.
 * "stop" when the program's file name contains "stop", else "start".
 *
 * Built with mingw-w64 (packaging/windows/build_zip.py):
 *   x86_64-w64-mingw32-gcc -municode -mwindows -O2 -s -o "Start omen-gateway.exe" launcher.c
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <wchar.h>

#define LONG_PATH 32768

static int fail(const wchar_t *what) {
    wchar_t text[1024];
    swprintf(text, 1024,
             L"%ls (Windows error %lu).\n\nThis folder may be incomplete: unzip omen-gateway-windows-x64.zip "
             L"again, and start omen-gateway from the unzipped folder.", what, GetLastError());
    MessageBoxW(NULL, text, L"omen-gateway", MB_OK | MB_ICONERROR);
    return 1;
}

int WINAPI wWinMain(HINSTANCE instance, HINSTANCE previous, PWSTR args, int show) {
    static wchar_t self[LONG_PATH], folder[LONG_PATH], python[LONG_PATH], line[LONG_PATH + 64], name[MAX_PATH];
    (void)instance; (void)previous; (void)args; (void)show;
    DWORD size = GetModuleFileNameW(NULL, self, LONG_PATH);
    if (size == 0 || size >= LONG_PATH) return fail(L"Cannot tell where this program is");
    wcscpy(folder, self);
    wchar_t *slash = wcsrchr(folder, L'\\');
    if (slash == NULL) return fail(L"Cannot tell where this program is");
    *slash = L'\0';
    wcsncpy(name, slash + 1 - folder + self, MAX_PATH - 1);
    CharLowerW(name);
    const wchar_t *verb = wcsstr(name, L"stop") ? L"stop" : L"start";
    swprintf(python, LONG_PATH, L"%ls\\python\\python.exe", folder);
    swprintf(line, LONG_PATH + 64, L"\"%ls\" -m reconciler.launcher %ls", python, verb);
    STARTUPINFOW start = {0};
    PROCESS_INFORMATION run = {0};
    start.cb = sizeof start;
    if (!CreateProcessW(python, line, NULL, NULL, FALSE, CREATE_NO_WINDOW, NULL, folder, &start, &run))
        return fail(L"Cannot start omen-gateway's own Python (python\\python.exe)");
    WaitForSingleObject(run.hProcess, INFINITE);
    DWORD code = 1;
    GetExitCodeProcess(run.hProcess, &code);
    CloseHandle(run.hThread);
    CloseHandle(run.hProcess);
    return (int)code;
}
