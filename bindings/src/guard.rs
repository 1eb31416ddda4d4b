//! Keeps Rust panics on this side of the FFI: a panic inside an exported call becomes
//! [`SotongError::Internal`] instead of unwinding into (and aborting) the app.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::SotongError;

/// Runs a synchronous call body, turning a panic into [`SotongError::Internal`].
pub(crate) fn sync_call<T>(
    body: impl FnOnce() -> Result<T, SotongError>,
) -> Result<T, SotongError> {
    // AssertUnwindSafe: after a panic we only report it; the core's state is behind its own
    // locks and database transactions, which a panic rolls back or poisons.
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panic_error(payload)))
}

/// Runs an asynchronous call body as a task on the tokio runtime, turning a panic into
/// [`SotongError::Internal`]. If the caller drops the future (a cancelled Kotlin coroutine or
/// Swift task), the task is aborted too.
pub(crate) async fn async_call<T, F>(body: F) -> Result<T, SotongError>
where
    F: Future<Output = Result<T, SotongError>> + Send + 'static,
    T: Send + 'static,
{
    let mut task = AbortOnDrop(tokio::spawn(body));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(panic_error(e.into_panic())),
        Err(_) => Err(SotongError::Internal {
            reason: "the call was cancelled".to_owned(),
        }),
    }
}

/// Aborts the task when the awaiting future is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_error(payload: Box<dyn Any + Send>) -> SotongError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    SotongError::Internal {
        reason: format!("panic: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_sync_call_becomes_internal() {
        let r: Result<(), _> = sync_call(|| panic!("boom"));
        match r {
            Err(SotongError::Internal { reason }) => assert_eq!(reason, "panic: boom"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(sync_call(|| Ok(7)).unwrap(), 7);
    }

    #[tokio::test]
    async fn a_panic_in_an_async_call_becomes_internal() {
        let r: Result<(), _> = async_call(async { panic!("async {}", 42) }).await;
        match r {
            Err(SotongError::Internal { reason }) => assert_eq!(reason, "panic: async 42"),
            other => panic!("unexpected {other:?}"),
        }
        let ok = async_call(async { Ok::<_, SotongError>("fine") }).await;
        assert_eq!(ok.unwrap(), "fine");
    }

    #[tokio::test]
    async fn dropping_the_call_aborts_its_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let call = async_call(async move {
            // Holds `tx` until aborted; never completes by itself.
            let _tx = tx;
            std::future::pending::<Result<(), SotongError>>().await
        });
        // Poll once so the task is spawned, then drop the call.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), call).await;
        // The task was aborted, so its `tx` is dropped and the receiver sees it closed.
        assert!(rx.await.is_err());
    }
}
