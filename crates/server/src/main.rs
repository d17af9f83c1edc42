fn main() -> std::process::ExitCode {
    return_freed_memory_to_the_os();
    etx_server::cli::main()
}

/// glibc raises its mmap threshold after the first large free, and from then on keeps freed
/// large blocks (Argon2's 19 MiB working memory) in per-thread arenas forever. A fixed threshold
/// keeps such blocks as their own mappings, so an idle server gives them back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn return_freed_memory_to_the_os() {
    // SAFETY: mallopt only adjusts allocator tunables; it is called before any other thread
    // exists and touches no Rust-managed memory.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_memory_to_the_os() {}
