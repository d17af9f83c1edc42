//! The allocator of the `etx` binary, shared with the benchmarks so that they measure what ships.

// The request path allocates and frees many short strings and vectors on several threads at
// once; under transfer load glibc's malloc took almost half of the server's CPU (arena locks,
// consolidation), mimalloc a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// By default mimalloc commits its arenas eagerly and returns freed memory to the OS only at a
/// later allocation, so an idle server kept Argon2's working memory (19 MiB per hashing
/// thread): 72 MiB after one login instead of 28. The options must be set before the first
/// allocation creates the first arena, so they run as an ELF initialiser, before `main` and
/// before the standard library allocates.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_MEMORY_ON_USE: extern "C" fn() = commit_memory_on_use;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
extern "C" fn commit_memory_on_use() {
    // `mi_option_arena_eager_commit` and `mi_option_purge_delay` in mimalloc 3's `mi_option_e`.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: setting an option touches only mimalloc's option table; nothing else runs yet.
    // `getenv` reads the environment glibc set up before any initialiser ran, and allocates
    // nothing; an operator's MIMALLOC_PURGE_DELAY (milliseconds) is left for mimalloc to read.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        if libc::getenv(c"MIMALLOC_PURGE_DELAY".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        }
    }
}
