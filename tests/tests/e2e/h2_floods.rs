//! HTTP/2 connection-level protections through the wire, with a raw HTTP/2 client (the `h2`
//! crate over rustls, no certificate check): the advertised limits, and rapid reset
//! (CVE-2023-44487) ending in `GOAWAY` with the upstream seeing a bounded number of requests.
use crate::common::*;
use crate::tls::localhost_tls;
use portcullis_tests::{Gateway, Reply, Upstream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

type H2 = (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>);

async fn connect(gw: &Gateway) -> H2 {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.proxy_addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    (send, tokio::spawn(conn))
}

fn request(path: &str) -> http::Request<()> {
    http::Request::builder().uri(format!("https://localhost{path}")).body(()).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn advertised_limits() {
    let up = Upstream::start("app");
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    rt().block_on(async {
        let (send, _conn) = connect(&gw).await;
        let mut send = send.ready().await.unwrap();
        // One exchange so the server's SETTINGS have been applied.
        let (resp, _) = send.send_request(request("/api/x"), true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        assert_eq!(send.current_max_send_streams(), 100);
    });
}

#[test]
fn rapid_reset_ends_in_goaway() {
    // Over the budget of 20 streams reset before the gateway accepted them (with a budget of a
    // million, this connection stays open and the test fails; 5 resets are within budget).
    const RESETS: usize = 30;
    // A slow upstream: a stream reset right after its HEADERS must cost the gateway little.
    let up = Upstream::with_fn("app", |_| Reply::status(200).with_delay(Duration::from_millis(200)));
    let (_pki, tls) = localhost_tls("");
    let gw = Cfg::new(&[up.addr()]).extra(&tls).start();
    let sent = rt().block_on(async {
        let (mut send, conn) = connect(&gw).await;
        let mut sent = 0;
        for _ in 0..RESETS {
            send = match send.ready().await {
                Ok(s) => s,
                Err(_) => break,
            };
            match send.send_request(request("/api/x"), false) {
                Ok((_, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    sent += 1;
                }
                Err(_) => break,
            }
        }
        // The server closes the connection: GOAWAY (ENHANCE_YOUR_CALM) or a plain close.
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        assert!(ended.is_ok(), "the connection outlived the rapid resets");
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let reached = up.requests_excluding("/health").len();
    eprintln!("rapid reset: sent {sent}, upstream saw {reached}");
    assert!(sent < RESETS || reached < 200, "sent {sent}, upstream saw {reached}");
    assert!(reached < 500, "upstream saw {reached} of {sent} reset requests");
    // The gateway still serves.
    assert_eq!(crate::tls::https(&gw, portcullis_tests::tls::Proto::H2, "/api/x", &[], &[]).status, 200);
}
