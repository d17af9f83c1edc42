// The request path allocates and frees many short strings and vectors on several threads at
// once; under transfer load glibc's malloc took almost half of the server's CPU (arena locks,
// consolidation), mimalloc a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    etx_server::cli::main()
}

/// mimalloc commits its arenas eagerly by default, which left an idle server holding some
/// 20 MiB it had touched once (Argon2's working memory at start-up). The option must be set
/// before the first allocation creates the first arena, so it runs as an ELF initialiser,
/// before `main` and before the standard library allocates.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_MEMORY_ON_USE: extern "C" fn() = commit_memory_on_use;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
extern "C" fn commit_memory_on_use() {
    // `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_e`.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    // SAFETY: setting an option touches only mimalloc's option table; nothing else runs yet.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
}
