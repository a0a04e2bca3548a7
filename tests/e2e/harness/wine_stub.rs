//! The DLL wine lacks: Debian's wine 8 has no `bcryptprimitives.dll`, whose
//! `ProcessPrng` Rust's std calls for random numbers. This stand-in, built
//! with mingw-w64 next to a Windows program, answers from `RtlGenRandom`
//! (advapi32's `SystemFunction036`), as Windows 7 did. Shared by the tests'
//! wine harness and the startup benchmark.

use std::path::Path;
use std::process::Command;

const SOURCE: &str = "#include <windows.h>\n#include <ntsecapi.h>\n\
BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) { return RtlGenRandom(p, (ULONG)n); }\n";

/// Build `bcryptprimitives.dll` in `dir` (the directory of the .exe) unless
/// it is there.
///
/// # Errors
///
/// Writing the source, or running `x86_64-w64-mingw32-gcc`, failed.
pub fn ensure_bcryptprimitives(dir: &Path) -> std::io::Result<()> {
    let dll = dir.join("bcryptprimitives.dll");
    if dll.exists() {
        return Ok(());
    }
    let source = dir.join("bcryptprimitives-stub.c");
    std::fs::write(&source, SOURCE)?;
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-o"])
        .arg(&dll)
        .arg(&source)
        .arg("-ladvapi32")
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!("x86_64-w64-mingw32-gcc failed ({status})")));
    }
    Ok(())
}
