//! TLS for the e2e suites: certificates generated at run time with the `openssl` CLI (a CA, leaf
//! certificates with chosen DNS names, client certificates), and a client over the wire with
//! `curl` (HTTP/1.1 or HTTP/2 over TLS, `--resolve` to the gateway's real port).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::TempDir;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway CA and the certificates it signs, in a temp dir.
pub struct Pki {
    dir: TempDir,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A fresh CA (`ca.pem`, `ca.key`).
    pub fn new() -> Pki {
        let dir = TempDir::new("pcx-pki");
        let p = |f: &str| dir.path().join(f).display().to_string();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-days",
            "3",
            "-subj",
            "/CN=Portcullis Test CA",
        ]);
        Pki { dir }
    }

    /// The directory files live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf `<name>.pem`/`<name>.key` signed by the CA for these DNS names or IP addresses
    /// (server and client use), valid for `days` (negative: already expired). Returns (cert, key).
    pub fn leaf(&self, name: &str, dns: &[&str], days: i64) -> (PathBuf, PathBuf) {
        let p = |f: &str| self.dir.path().join(f).display().to_string();
        let (cert, key, csr, ext) = (
            p(&format!("{name}.pem")),
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.ext")),
        );
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        // An IP address is an IP name (servers that announce their address: Sentinel, Cluster).
        let san: Vec<String> = dns
            .iter()
            .map(|d| if d.parse::<std::net::IpAddr>().is_ok() { format!("IP:{d}") } else { format!("DNS:{d}") })
            .collect();
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
                san.join(",")
            ),
        )
        .unwrap();
        let (start, end) = if days < 0 {
            // Valid from ten days ago until yesterday (x509 -not_before needs OpenSSL 3.4; use
            // the CA subcommand's explicit dates instead).
            (Some(date_days(-10)), Some(date_days(-1)))
        } else {
            (None, None)
        };
        match (start, end) {
            (Some(s), Some(e)) => {
                let db = self.dir.path().join(format!("{name}.db"));
                std::fs::write(&db, "").unwrap();
                let cnf = p(&format!("{name}.cnf"));
                std::fs::write(
                    &cnf,
                    format!(
                        "[ca]\ndefault_ca=d\n[d]\ndatabase={}\nnew_certs_dir={}\nserial={}\ndefault_md=sha256\npolicy=pol\ncopy_extensions=none\n[pol]\ncommonName=supplied\n[ext]\n{}",
                        db.display(),
                        self.dir.path().display(),
                        p(&format!("{name}.srl")),
                        std::fs::read_to_string(&ext).unwrap()
                    ),
                )
                .unwrap();
                std::fs::write(p(&format!("{name}.srl")), "01\n").unwrap();
                openssl(&[
                    "ca",
                    "-batch",
                    "-config",
                    &cnf,
                    "-cert",
                    &p("ca.pem"),
                    "-keyfile",
                    &p("ca.key"),
                    "-in",
                    &csr,
                    "-out",
                    &cert,
                    "-startdate",
                    &s,
                    "-enddate",
                    &e,
                    "-extensions",
                    "ext",
                    "-notext",
                ]);
            }
            _ => openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &p("ca.pem"),
                "-CAkey",
                &p("ca.key"),
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                &days.max(1).to_string(),
                "-extfile",
                &ext,
            ]),
        }
        (PathBuf::from(cert), PathBuf::from(key))
    }
}

fn date_days(offset: i64) -> String {
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + offset * 86_400;
    // YYMMDDHHMMSSZ from Unix seconds (civil-from-days).
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = portcullis_rules::limits::quota::civil_from_days(days);
    format!("{:02}{m:02}{d:02}{:02}{:02}{:02}Z", y % 100, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// What curl got back.
#[derive(Debug, Clone)]
pub struct CurlResp {
    /// 0 when no response (handshake refused, reset…).
    pub status: u16,
    /// `1.1` or `2`.
    pub http_version: String,
    /// Lowercase names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// curl's exit code (0 on success).
    pub exit: i32,
    pub stderr: String,
}

impl CurlResp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// Which protocol to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 over TLS (ALPN `http/1.1`).
    H1,
    /// HTTP/2 over TLS (ALPN `h2`), `--http2` and the h2 requirement checked on the answer.
    H2,
}

/// A request through `curl` to `https://<host>:<port><path>` resolved to `addr`: `-k` unless
/// `ca` is given; `extra` are more curl arguments (`-X`, `--data-binary`, `--cert` …).
pub fn curl(
    proto: Proto,
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    extra: &[&str],
) -> CurlResp {
    let dir = TempDir::new("pcx-curl");
    let hfile = dir.path().join("h");
    let bfile = dir.path().join("b");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-k", "--path-as-is", "--max-time", "15"]);
    cmd.arg(match proto {
        Proto::H1 => "--http1.1",
        Proto::H2 => "--http2",
    });
    cmd.args(["--resolve", &format!("{host}:{}:{}", addr.port(), addr.ip())]);
    cmd.arg("-D").arg(&hfile).arg("-o").arg(&bfile);
    cmd.args(["-w", "%{http_code} %{http_version}"]);
    for (k, v) in headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    cmd.args(extra);
    cmd.arg(format!("https://{host}:{}{path}", addr.port()));
    let out = cmd.output().expect("run curl");
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = w.split_whitespace();
    let status = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = it.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    // The last head in the dump (after any 100 Continue).
    let raw = std::fs::read_to_string(&hfile).unwrap_or_default();
    for line in raw.lines() {
        let line = line.trim_end();
        if line.starts_with("HTTP/") {
            headers.clear();
        } else if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let r = CurlResp {
        status,
        http_version,
        headers,
        body: std::fs::read(&bfile).unwrap_or_default(),
        exit: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if proto == Proto::H2 && r.status != 0 {
        assert_eq!(r.http_version, "2", "asked for h2, got HTTP/{}: {r:?}", r.http_version);
    }
    r
}

/// The subject CN of the certificate the server presents for `sni` (`openssl s_client`).
pub fn served_cn(addr: SocketAddr, sni: Option<&str>) -> Option<String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(s) => cmd.args(["-servername", s]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd.stdin(std::process::Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pem_start = text.find("-----BEGIN CERTIFICATE-----")?;
    let pem_end = text.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    let pem = &text[pem_start..pem_end];
    let mut x = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    x.stdin.take()?.write_all(pem.as_bytes()).ok()?;
    let out = x.wait_with_output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    s.trim().strip_prefix("subject=").and_then(|s| s.strip_prefix("CN=")).map(|s| s.trim().to_string())
}

/// The TLS protocol version `openssl s_client` negotiates when limited to `flag`
/// (`-tls1_1`, `-tls1_2`, `-tls1_3`); `None` when the handshake fails.
pub fn negotiated(addr: SocketAddr, flag: &str) -> Option<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername", "localhost", flag])
        // Security level 0: the client really offers TLS 1.0/1.1 (Debian's default refuses them
        // itself, which would make a refusal test vacuous).
        .args(["-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384`, or `New, (NONE), Cipher is (NONE)`.
    let line = text.lines().find(|l| l.starts_with("New, "))?;
    let v = line.trim_start_matches("New, ").split(',').next()?.trim().to_string();
    v.starts_with("TLS").then_some(v)
}
