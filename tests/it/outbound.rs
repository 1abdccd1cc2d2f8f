//! The outbound guard against real connections, to loopback only: with private networks
//! refused (the default), every loopback form is refused before a byte reaches the in-test
//! server (it counts what it receives); with them allowed, the same server answers, so each
//! refusal is the guard's doing. Other address classes are classified in
//! `shared/src/outbound/tests.rs` without sending a packet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::StreamExt;
use herald_shared::outbound::{OutboundClient, OutboundError, body_stream, parse_url};

/// An HTTP server on 127.0.0.1 that counts the requests it receives.
pub struct CountingServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl CountingServer {
    pub async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/file",
                get(|State(hits): State<Arc<AtomicUsize>>| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    vec![7u8; 4096]
                }),
            )
            .route("/hop/{n}", get(hop))
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// `/hop/{n}` redirects to `/hop/{n-1}`, and `/hop/0` to `/file`.
async fn hop(State(hits): State<Arc<AtomicUsize>>, Path(n): Path<u32>) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        Redirect::to("/file").into_response()
    } else {
        Redirect::to(&format!("/hop/{}", n - 1)).into_response()
    }
}

fn guarded() -> OutboundClient {
    OutboundClient::with_timeout(false, Duration::from_secs(5)).unwrap()
}

fn open() -> OutboundClient {
    OutboundClient::with_timeout(true, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn every_loopback_form_is_refused_before_a_packet_is_sent() {
    let server = CountingServer::start().await;
    let port = server.addr.port();
    let cases = [
        (format!("http://127.0.0.1:{port}/file"), "loopback"),
        (format!("http://127.0.0.2:{port}/file"), "loopback"),
        (format!("http://[::1]:{port}/file"), "loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/file"), "loopback"),
        (format!("http://0.0.0.0:{port}/file"), "unspecified"),
        // A name that resolves to loopback: refused by the resolver, after the lookup.
        (format!("http://localhost:{port}/file"), "loopback"),
    ];
    for (url, class) in cases {
        let url = reqwest::Url::parse(&url).unwrap();
        let refused = guarded().get(&url).await.expect_err(url.as_str());
        assert_eq!(refused, OutboundError::Refused { class }, "{url}");
        assert_eq!(refused.to_string(), format!("refused: the address is {class}"));
    }
    assert_eq!(server.hits(), 0, "nothing reached the server");

    // The same server is reachable when private networks are allowed: the refusals above were
    // the guard's, not a dead port's.
    for url in [format!("http://127.0.0.1:{port}/file"), format!("http://localhost:{port}/file")] {
        let response = open().get(&reqwest::Url::parse(&url).unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn redirects_are_followed_up_to_five_hops() {
    let server = CountingServer::start().await;
    let url = |hops: u32| reqwest::Url::parse(&format!("http://127.0.0.1:{}/hop/{hops}", server.addr.port())).unwrap();
    // hop/4 .. hop/0 then /file: five redirects.
    let response = open().get(&url(4)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/file");
    assert_eq!(response.bytes().await.unwrap().len(), 4096);
    // Six redirects are one too many; the error does not quote the URL.
    let refused = open().get(&url(5)).await.unwrap_err();
    assert_eq!(refused, OutboundError::TooManyRedirects);
}

#[tokio::test]
async fn the_size_cap_holds_while_streaming() {
    let server = CountingServer::start().await;
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{}/file", server.addr.port())).unwrap();
    let whole: Vec<_> = body_stream(open().get(&url).await.unwrap(), 4096).collect().await;
    assert!(whole.iter().all(Result::is_ok));
    assert_eq!(whole.iter().map(|chunk| chunk.as_ref().unwrap().len()).sum::<usize>(), 4096);
    let capped: Vec<_> = body_stream(open().get(&url).await.unwrap(), 4095).collect().await;
    assert_eq!(capped.last(), Some(&Err(OutboundError::TooLarge { limit: 4095 })));
}

#[tokio::test]
async fn a_timeout_is_named() {
    // A listener that accepts and never answers.
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let client = OutboundClient::with_timeout(true, Duration::from_millis(300)).unwrap();
    let url = parse_url(&format!("http://{addr}/slow"), true).unwrap();
    assert_eq!(client.get(&url).await.unwrap_err(), OutboundError::Timeout);
    held.abort();
}
