//! A request whose handler panics answers 500 with the API's error shape, and leaves nothing
//! held.
//!
//! Without this, a panic in an async handler unwinds through the connection's task: tokio
//! catches it there, and the client sees the connection close with no answer. Blocking work
//! runs in `spawn_blocking`, whose panic arrives as a `JoinError` (see `server::blocking`).
//!
//! What a panic may leave behind: the engine's and the backup layer's locks are parking_lot
//! locks, released as the panic unwinds (they do not poison); a guard held across an `.await`
//! lives in the handler's future, which is dropped here as soon as the panic is caught. The
//! engine turns a panic in the metadata store into an error itself (arca-store's meta_guard).

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use arca_store::panic_text;

use crate::error::ApiError;

/// The 500 answer for a request that panicked (logged by `ApiError`'s response).
pub(crate) fn panicked(p: &(dyn Any + Send)) -> ApiError {
    ApiError::internal(format!(
        "the request failed on an internal error: {}",
        panic_text(p)
    ))
}

/// Polls the inner future, catching a panic in any poll.
struct CatchUnwind(Pin<Box<dyn Future<Output = Response> + Send>>);

impl Future for CatchUnwind {
    type Output = std::thread::Result<Response>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

/// Middleware: runs the rest of the stack, answering 500 if it panics.
pub(crate) async fn catch_panic(req: Request, next: Next) -> Response {
    // The future (and whatever it held) is dropped when this await completes.
    match CatchUnwind(Box::pin(next.run(req))).await {
        Ok(r) => r,
        Err(p) => panicked(&*p).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::routing::get;

    use super::*;

    /// One HTTP/1.1 request on a plain socket (off the runtime's threads).
    async fn get_raw(addr: std::net::SocketAddr, path: &str) -> String {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            // A dropped connection reads as an empty answer.
            let _ = s.read_to_string(&mut out);
            out
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_answers_500_with_the_error_shape_and_holds_no_lock() {
        // Held across an await: it lives in the handler's future.
        let lock = Arc::new(tokio::sync::Mutex::new(0u32));
        // Held in a poll: released as the panic unwinds.
        let sync_lock = Arc::new(parking_lot::Mutex::new(()));
        let (held, after) = (lock.clone(), lock.clone());
        let (sync_held, sync_after) = (sync_lock.clone(), sync_lock.clone());
        let app = Router::new()
            .route(
                "/boom",
                get(move || async move {
                    let mut g = held.lock().await;
                    *g += 1;
                    tokio::task::yield_now().await;
                    let _s = sync_held.lock();
                    panic!("handler bug {}", *g);
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .route(
                "/blocking",
                get(|| async {
                    crate::server::blocking(|| -> Result<(), ApiError> { panic!("in a thread") })
                        .await
                        .map(|_| "")
                }),
            )
            .route("/ok", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(catch_panic));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let r = get_raw(addr, "/boom").await;
        assert!(r.starts_with("HTTP/1.1 500"), "{r:?}");
        assert!(
            r.contains(r#""code":"internal""#) && r.contains("handler bug 1"),
            "{r:?}"
        );
        assert!(
            after.try_lock().is_ok(),
            "the lock held across an await was released"
        );
        assert!(
            sync_after.try_lock().is_some(),
            "the lock held in a poll was released"
        );
        let r = get_raw(addr, "/blocking").await;
        assert!(r.starts_with("HTTP/1.1 500"), "{r:?}");
        assert!(r.contains("in a thread"), "{r:?}");
        // The server goes on answering.
        assert!(get_raw(addr, "/ok").await.starts_with("HTTP/1.1 200"));
        let r = get_raw(addr, "/boom").await;
        assert!(r.contains("handler bug 2"), "{r:?}");
    }
}
