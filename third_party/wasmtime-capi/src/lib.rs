//! Re-exports Wasmtime's C API so that cargo bundles it into one static library.
pub use wasmtime_c_api::*;
