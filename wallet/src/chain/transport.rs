//! JSON-RPC over HTTP(S) with the workspace's reqwest (rustls on ring). alloy's own HTTP
//! transport would bring a second reqwest with another TLS stack into the build.

use std::task::{Context, Poll};
use std::time::Duration;

use alloy_json_rpc::{RequestPacket, ResponsePacket};
use alloy_transport::{TransportError, TransportErrorKind, TransportFut};

#[derive(Clone, Debug)]
pub(crate) struct HttpTransport {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpTransport {
    pub(crate) fn new(url: reqwest::Url) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { client, url })
    }

    async fn request(self, packet: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let response = self
            .client
            .post(self.url)
            .json(&packet)
            .send()
            .await
            .map_err(|e| TransportErrorKind::custom_str(&error_chain(&e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| TransportErrorKind::custom_str(&error_chain(&e.without_url())))?;
        if !status.is_success() {
            // Some nodes answer JSON-RPC errors with an HTTP error status; keep their message.
            if let Ok(packet) = serde_json::from_slice::<ResponsePacket>(&body)
                && packet.is_error()
            {
                return Ok(packet);
            }
            return Err(TransportErrorKind::http_error(
                status.as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| TransportError::deser_err(e, String::from_utf8_lossy(&body)))
    }
}

/// reqwest's top-level message ("error sending request") hides the cause ("connection
/// refused"); the chain of sources says what happened. The URL is left out (see
/// [`display_url`]): the caller names it.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl tower::Service<RequestPacket> for HttpTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, packet: RequestPacket) -> Self::Future {
        Box::pin(self.clone().request(packet))
    }
}

/// The URL for messages and logs: scheme, host and port. Hosted RPC URLs often carry an API key
/// in the path or query, which must not end up in an error shown on screen or in a log.
pub(crate) fn display_url(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    if url.path() != "/" || url.query().is_some() {
        shown.push_str("/…");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_url_hides_paths_and_keys() {
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        assert_eq!(
            display_url(&url("http://127.0.0.1:8545")),
            "http://127.0.0.1:8545"
        );
        assert_eq!(
            display_url(&url("https://user:pw@rpc.example.org/v2/SECRETKEY?x=1")),
            "https://rpc.example.org/…"
        );
    }
}
