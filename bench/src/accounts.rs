//! Devices registered over plain HTTP, for clients that are not `sotong_core` phones (the
//! JavaScript workload, the idle WebSocket devices): a code, the code from the server log,
//! a bearer token.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use sotong_core::privacy::mask_phone;

use crate::CodeLog;

/// An HTTP client for the bench's own registrations (plain HTTP on loopback).
pub fn http_client() -> Result<reqwest::Client> {
    // reqwest is built without a default TLS provider; the bench never uses TLS, but the
    // builder wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .context("HTTP client")
}

/// Registers a device of `phone` at `url` and returns its bearer token.
pub async fn register_token(
    http: &reqwest::Client,
    url: &str,
    codes: &CodeLog,
    phone: &str,
    device: &str,
) -> Result<String> {
    let m = mask_phone(phone);
    let nth = codes.codes_for(&m)?.len();
    let resp = http
        .post(format!("{url}/v1/auth/code"))
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .context("POST /v1/auth/code")?;
    if !resp.status().is_success() {
        bail!(
            "POST /v1/auth/code answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let code = codes.wait(&m, nth).await?;
    let resp = http
        .post(format!("{url}/v1/auth/register"))
        .json(&json!({ "phone": phone, "code": code, "device_name": device }))
        .send()
        .await
        .context("POST /v1/auth/register")?;
    if !resp.status().is_success() {
        bail!(
            "POST /v1/auth/register answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let body: Value = resp.json().await.context("register answer")?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("register answer without a token"))
}
