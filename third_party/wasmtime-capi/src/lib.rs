//! Wasmtime's C API bundled into one static library, plus wasmlet's own additions.
//!
//! `wasi_config_set_stdout_custom` in Wasmtime 48 adapts the callback through an async stream,
//! which spawns a Tokio task per Store and hops threads on every write (~100 us per request).
//! `wasmlet_wasi_config_set_output_callback` installs a synchronous stream instead: the callback
//! runs on the thread executing the guest, in write order, with no task or thread hop.
pub use wasmtime_c_api::*;

use bytes::Bytes;
use std::ffi::c_void;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

type Callback = extern "C" fn(*mut c_void, *const u8, usize) -> isize;

#[derive(Clone, Copy)]
struct SyncOutput {
    callback: Callback,
    data: *mut c_void,
}

// The host guarantees `data` outlives the Store and is safe to use from the guest's thread.
unsafe impl Send for SyncOutput {}
unsafe impl Sync for SyncOutput {}

impl SyncOutput {
    fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let wrote = (self.callback)(self.data, buf.as_ptr(), buf.len());
            if wrote < 0 {
                return Err(std::io::Error::from_raw_os_error((-wrote) as i32));
            }
            if wrote == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
            }
            buf = &buf[(wrote as usize).min(buf.len())..];
        }
        Ok(())
    }
}

impl IsTerminal for SyncOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for SyncOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(*self)
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(*self)
    }
}

#[async_trait::async_trait]
impl Pollable for SyncOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for SyncOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_all(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::format_err!(e)))
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl tokio::io::AsyncWrite for SyncOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_all(buf).map(|()| buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `wasi_config_t` in wasmtime-c-api-impl 48.0.8 is `#[repr(C)] struct { builder: WasiCtxBuilder }`
/// with a private field; both crates are pinned to that exact version (Cargo.toml `=48.0.8`),
/// so the first field is reached through the repr(C) layout.
fn builder(config: &mut wasi_config_t) -> &mut wasmtime_wasi::WasiCtxBuilder {
    const _: () = assert!(
        std::mem::size_of::<wasi_config_t>() == std::mem::size_of::<wasmtime_wasi::WasiCtxBuilder>()
    );
    unsafe { &mut *(config as *mut wasi_config_t as *mut wasmtime_wasi::WasiCtxBuilder) }
}

/// Sends guest stdout (`stream` = 1) or stderr (`stream` = 2) to `callback(data, buf, len)`,
/// called synchronously on the guest's thread. A negative return is an errno for the guest.
#[unsafe(no_mangle)]
pub extern "C" fn wasmlet_wasi_config_set_output_callback(
    config: &mut wasi_config_t,
    stream: i32,
    callback: Callback,
    data: *mut c_void,
) -> bool {
    let output = SyncOutput { callback, data };
    match stream {
        1 => {
            builder(config).stdout(output);
            true
        }
        2 => {
            builder(config).stderr(output);
            true
        }
        _ => false,
    }
}

/// Wasmtime 48's C API only exposes `total_stacks` with its `async` feature, but the engine is
/// built with async support (wasmtime-wasi needs it) and its stack pool defaults to 1000 stacks,
/// which costs ~1000 mprotect calls (~10 ms) at every engine start. `wasmtime_pooling_allocation_config_t`
/// is `#[repr(C)] struct { config: PoolingAllocationConfig }` in the pinned version.
#[unsafe(no_mangle)]
pub extern "C" fn wasmlet_pooling_allocation_config_total_stacks_set(
    config: &mut wasmtime_pooling_allocation_config_t,
    count: u32,
) {
    const _: () = assert!(
        std::mem::size_of::<wasmtime_pooling_allocation_config_t>()
            == std::mem::size_of::<wasmtime::PoolingAllocationConfig>()
    );
    let inner = unsafe {
        &mut *(config as *mut wasmtime_pooling_allocation_config_t
            as *mut wasmtime::PoolingAllocationConfig)
    };
    inner.total_stacks(count);
}

/// Like `wasmtime_store_limiter` for linear memory, plus Wasmtime's `trap_on_grow_failure`:
/// a guest whose memory would grow past `memory_size` bytes is stopped with a trap at that
/// moment instead of seeing `memory.grow` fail (the kubelet's OOMKilled semantics).
/// `wasmtime_store_t` in the pinned 48.0.8 is `#[repr(C)] struct { store: WasmtimeStore }`.
#[unsafe(no_mangle)]
pub extern "C" fn wasmlet_store_memory_limiter(
    store: &mut wasmtime_store_t,
    memory_size: i64,
    trap_on_grow_failure: bool,
) {
    const _: () = assert!(
        std::mem::size_of::<wasmtime_store_t>() == std::mem::size_of::<WasmtimeStore>()
    );
    let inner = unsafe { &mut *(store as *mut wasmtime_store_t as *mut WasmtimeStore) };
    let mut builder = wasmtime::StoreLimitsBuilder::new().trap_on_grow_failure(trap_on_grow_failure);
    if memory_size >= 0 {
        builder = builder.memory_size(memory_size as usize);
    }
    inner.data_mut().store_limits = builder.build();
    inner.limiter(|data| &mut data.store_limits);
}
