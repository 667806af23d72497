//! The one call into llama.cpp that llama-cpp-2 does not wrap.
#![allow(unsafe_code)]

use std::ffi::CStr;

/// `llama_print_system_info()`: the features ggml was compiled with.
pub(crate) fn system_info() -> String {
    // SAFETY: llama_print_system_info takes no arguments and returns a pointer to a static,
    // NUL-terminated buffer owned by llama.cpp (never null), valid until the next call; we copy
    // it out immediately.
    let ptr = unsafe { llama_cpp_sys_2::llama_print_system_info() };
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated, see above.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .trim()
        .to_string()
}
