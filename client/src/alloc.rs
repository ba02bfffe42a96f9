//! Allocator options for programs that install mimalloc as their global
//! allocator, as rask's own binaries do (the `mimalloc` feature).

/// Lets mimalloc back its arenas with large (2 MiB) OS pages and keep them
/// committed, unless `MIMALLOC_ALLOW_LARGE_OS_PAGES` (or the older
/// `MIMALLOC_LARGE_OS_PAGES`) says otherwise. Fresh 100 MiB array chunks then
/// fault in as 50 huge pages instead of 25,600 small ones, and freed chunks
/// are not decommitted between tasks (docs/BENCHMARKS.md, arrays). Call it
/// first thing in `main`.
pub fn use_large_os_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_LARGE_OS_PAGES").is_none()
        && std::env::var_os("MIMALLOC_LARGE_OS_PAGES").is_none()
    {
        // SAFETY: `mi_option_set` stores an option value in mimalloc's option
        // table; it takes no pointers, and mimalloc reads options atomically.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(libmimalloc_sys::mi_option_large_os_pages, 1);
        }
    }
}
