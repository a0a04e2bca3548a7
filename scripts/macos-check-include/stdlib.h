/* A stand-in for the macOS SDK's <stdlib.h>, for scripts/check-macos only:
   it lets ring's and wasmtime's C files compile for a type check (nothing
   is linked). A real macOS build uses Apple's SDK. */
#include <stddef.h>
void abort(void);
void *malloc(size_t);
void free(void *);
