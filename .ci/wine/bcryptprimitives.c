/* Wine 8.0 gap (harness only, never shipped): Rust 1.78+ programs (pydantic-core, cryptography,
 * watchfiles, cbor2) import ProcessPrng from bcryptprimitives.dll, which Wine 8.0 does not have.
 * This stand-in calls BCryptGenRandom, as Windows' own does. Built by .ci/windows-lane with
 * Debian's mingw-w64 and copied into the lane's own Wine prefix. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
