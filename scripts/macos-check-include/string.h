/* A stand-in for the macOS SDK's <string.h>, for scripts/check-macos only:
   it lets ring's and wasmtime's C files compile for a type check (nothing
   is linked). A real macOS build uses Apple's SDK. */
#include <stddef.h>
void *memcpy(void *, const void *, size_t);
void *memmove(void *, const void *, size_t);
void *memset(void *, int, size_t);
int memcmp(const void *, const void *, size_t);
