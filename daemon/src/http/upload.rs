//! Reading a request body into memory, no larger than the upload limit.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, EXPECT};
use futures_util::StreamExt;

use super::errors::ApiError;

/// How long an oversized upload is still read (and thrown away) before the 413 is sent. A
/// server that answers while the client is still sending and then closes makes the kernel
/// reset the connection, and the client may never see the answer.
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// Most bytes thrown away that way.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// The whole body, or 413 when it is longer than `limit` bytes. A client that declared a
/// longer body and waits for `100 Continue` (curl does for large uploads) is refused before it
/// sends anything.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut data = body.into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        let waits = headers
            .get(EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        if !waits {
            drain(&mut data).await;
        }
        return Err(ApiError::too_large(limit));
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::invalid(
                "incomplete_request",
                None,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            drain(&mut data).await;
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

async fn drain(data: &mut axum::body::BodyDataStream) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut thrown = 0;
        while let Some(Ok(chunk)) = data.next().await {
            thrown += chunk.len();
            if thrown > DRAIN_BYTES {
                return;
            }
        }
    })
    .await;
}
