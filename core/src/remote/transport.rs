//! Which HTTP a [`RemoteEngine`](super::RemoteEngine) speaks: HTTP/2 when the server offers
//! it, so that every call and every long poll of a process share one connection; HTTP/1.1
//! otherwise.
//!
//! `inloop serve` speaks HTTP/2 without TLS (h2c, prior knowledge) on its one port. Over
//! `http://` the client cannot ask (no TLS, no ALPN), so the first call probes: a request to
//! `{base}/healthz` over HTTP/2. Any HTTP answer settles it (HTTP/2 from then on); any other
//! failure but a refused connection means something between speaks only HTTP/1.1 (a proxy),
//! and HTTP/1.1 it is from then on. A refused connection settles nothing: the server is not
//! up yet, and the next call probes again. Over `https://`, TLS negotiates the protocol by
//! ALPN (HTTP/2 where the server or proxy offers it), so no probe is needed.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use reqwest::Url;

use crate::error::{Error, Result};

const UNKNOWN: u8 = 0;
const H2C: u8 = 1;
const NEGOTIATED: u8 = 2;

/// The clients, and which one this server takes.
pub(super) struct Transport {
    /// HTTP/1.1 over `http://`; over `https://`, whatever ALPN picks.
    negotiated: reqwest::Client,
    /// HTTP/2 with prior knowledge, for `http://` only.
    h2c: Option<reqwest::Client>,
    mode: AtomicU8,
    probing: tokio::sync::Mutex<()>,
    healthz: Url,
}

impl Transport {
    pub(super) fn new(base: &Url, connect_timeout: Duration) -> Result<Transport> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .user_agent(concat!("inloop/", env!("CARGO_PKG_VERSION")))
                .tcp_nodelay(true)
                // A server that vanished without a FIN (host down, cable cut) is noticed
                // within a minute, not at the end of every long poll on the connection.
                .http2_keep_alive_interval(Duration::from_secs(20))
                .http2_keep_alive_timeout(Duration::from_secs(20))
                .http2_adaptive_window(true)
        };
        let built = |b: reqwest::ClientBuilder| {
            b.build()
                .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
        };
        let plain = base.scheme() == "http";
        let mut healthz = base.clone();
        healthz.set_query(None);
        healthz.set_fragment(None);
        if let Ok(mut path) = healthz.path_segments_mut() {
            path.pop_if_empty().push("healthz");
        }
        Ok(Transport {
            negotiated: built(builder())?,
            h2c: if plain {
                Some(built(builder().http2_prior_knowledge())?)
            } else {
                None
            },
            mode: AtomicU8::new(if plain { UNKNOWN } else { NEGOTIATED }),
            probing: tokio::sync::Mutex::new(()),
            healthz,
        })
    }

    /// The client for the next call (probing the server first, once, over `http://`).
    pub(super) async fn client(&self) -> &reqwest::Client {
        let Some(h2c) = &self.h2c else {
            return &self.negotiated;
        };
        match self.mode.load(Ordering::Acquire) {
            H2C => return h2c,
            NEGOTIATED => return &self.negotiated,
            _ => {}
        }
        // One probe at a time: a thousand first calls wait for one answer, not a thousand.
        let _probe = self.probing.lock().await;
        match self.mode.load(Ordering::Acquire) {
            H2C => return h2c,
            NEGOTIATED => return &self.negotiated,
            _ => {}
        }
        match h2c
            .get(self.healthz.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(_) => {
                self.mode.store(H2C, Ordering::Release);
                h2c
            }
            // Not up yet: the call goes out (and is retried) over HTTP/1.1; the next probes.
            Err(e) if e.is_connect() => &self.negotiated,
            Err(e) => {
                tracing::debug!(error = %e, "inloop: the server does not speak HTTP/2 here; using HTTP/1.1");
                self.mode.store(NEGOTIATED, Ordering::Release);
                &self.negotiated
            }
        }
    }

    /// Whether calls go over HTTP/2 without TLS (h2c): settled by the first call to an
    /// `http://` server that offers it.
    pub(super) fn h2c(&self) -> bool {
        self.mode.load(Ordering::Acquire) == H2C
    }
}
