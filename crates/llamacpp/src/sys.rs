//! The calls into llama.cpp that llama-cpp-2 does not wrap (`llama_print_system_info`,
//! `llama_model_quantize`): the only `unsafe` code in lmdensity.
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

/// `llama_model_quantize(input, output, params)` with llama.cpp's default parameters but the
/// target file type and thread count; returns llama.cpp's status (0 = success).
pub(crate) fn model_quantize(
    input: &CStr,
    output: &CStr,
    ftype: llama_cpp_sys_2::llama_ftype,
    threads: i32,
) -> u32 {
    // SAFETY: returns a plain struct by value; no pointers are involved.
    let mut params = unsafe { llama_cpp_sys_2::llama_model_quantize_default_params() };
    params.ftype = ftype;
    params.nthread = threads;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call; `params` is a
    // fully initialised struct from llama.cpp's own defaults whose pointer fields (imatrix,
    // overrides, pruned layers) are the defaults' nulls; llama.cpp reads it and does not keep
    // the pointer after returning.
    unsafe { llama_cpp_sys_2::llama_model_quantize(input.as_ptr(), output.as_ptr(), &params) }
}
