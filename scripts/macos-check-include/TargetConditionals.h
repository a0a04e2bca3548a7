/* A stand-in for the macOS SDK's <TargetConditionals.h>, for scripts/check-macos only:
   it lets ring's and wasmtime's C files compile for a type check (nothing
   is linked). A real macOS build uses Apple's SDK. */
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_TV 0
#define TARGET_OS_SIMULATOR 0
