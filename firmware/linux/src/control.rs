//! The control socket: a Unix socket in the state directory (mode 0600) where `hostctl` asks the
//! daemon for its status and metrics. One request line of JSON in, one JSON document (or Prometheus
//! text) out, then the connection closes. The listener only reads and writes bytes; the answers are
//! built by the main loop, which owns the node. The same requests arrive over the overlay from an admin's
//! `hostctl --via` (vn-core checks the admin certificate; the main loop answers them with these answers).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// The socket's file name in the state directory.
pub const SOCKET_FILE: &str = "control.sock";
/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;

/// What hostctl may ask.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Node, namespace, bindings and counters, as JSON.
    Status,
    /// Counters in the Prometheus text format.
    Metrics,
    /// A DHT read: `ip:<addr>`, `host:<name>` or `node:<hex id>`.
    DhtGet {
        /// The key's text form.
        key: String,
    },
    /// Reserve an address for this node (and a host's MAC, an admin name).
    Reserve {
        /// The address.
        ip: String,
        /// Never migrated away.
        #[serde(default)]
        pin: bool,
        /// An admin hostname.
        #[serde(default)]
        name: Option<String>,
        /// The host that gets it by DHCP (`aa:bb:cc:dd:ee:ff`).
        #[serde(default)]
        mac: Option<String>,
    },
    /// A revocation list (hex of the CA-signed bytes `hostctl node revoke` wrote): taken when newer,
    /// kept in the `revoked` file, and passed to every peer.
    Revocation {
        /// The list's bytes in hex.
        hex: String,
    },
}

/// A request with the way back to its connection.
pub type Pending = (Request, oneshot::Sender<String>);

/// Listen on `dir/control.sock` and hand requests to the main loop through the returned channel.
pub fn listen(dir: &Path) -> Result<(PathBuf, mpsc::Receiver<Pending>)> {
    let path = dir.join(SOCKET_FILE);
    // A socket left by a killed daemon would make bind fail; it is ours to replace.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove the old {}", path.display())),
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot create the control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let (tx, rx) = mpsc::channel::<Pending>(16);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(rd, MAX_REQUEST));
                let read =
                    tokio::time::timeout(std::time::Duration::from_secs(5), reader.read_line(&mut line))
                        .await;
                let answer = match read {
                    Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
                        Ok(req) => {
                            let (otx, orx) = oneshot::channel();
                            if tx.send((req, otx)).await.is_err() {
                                return;
                            }
                            orx.await.unwrap_or_default()
                        }
                        Err(e) => {
                            json!({ "error": format!("bad request: {e}; send {{\"cmd\":\"status\"}}") })
                                .to_string()
                        }
                    },
                    _ => return,
                };
                if let Err(e) = wr.write_all(answer.as_bytes()).await {
                    debug!("control socket write: {e}");
                }
            });
        }
    });
    Ok((path, rx))
}

/// Render the node's counters as Prometheus text.
pub fn metrics(namespace: &str, stats: &[(&str, u64)], bindings: usize) -> String {
    let mut out = String::new();
    for (name, value) in stats {
        out.push_str(&format!(
            "# TYPE vngate_{name}_total counter\nvngate_{name}_total{{namespace=\"{namespace}\"}} {value}\n"
        ));
    }
    out.push_str(&format!(
        "# TYPE vngate_bindings gauge\nvngate_bindings{{namespace=\"{namespace}\"}} {bindings}\n"
    ));
    out
}

/// Log and ignore a closed channel (the daemon is shutting down).
pub fn answer(reply: oneshot::Sender<String>, body: String) {
    if reply.send(body).is_err() {
        warn!("control client went away before its answer");
    }
}

/// Status as JSON (`overlay` is null for a node serving one site alone).
pub fn status(
    node: Value,
    namespace: Value,
    bindings: Vec<Value>,
    stats: &[(&str, u64)],
    overlay: Value,
) -> String {
    let stats: serde_json::Map<String, Value> =
        stats.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect();
    json!({ "node": node, "namespace": namespace, "bindings": bindings, "stats": stats, "overlay": overlay })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_metrics_render() {
        assert_eq!(serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(), Request::Status);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"dht_get","key":"ip:10.250.1.5"}"#).unwrap(),
            Request::DhtGet { key: "ip:10.250.1.5".into() }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"reserve","ip":"10.250.1.5","name":"pr"}"#).unwrap(),
            Request::Reserve { ip: "10.250.1.5".into(), pin: false, name: Some("pr".into()), mac: None }
        );
        let m = metrics("demo", &[("malformed", 3)], 2);
        assert!(m.contains("vngate_malformed_total{namespace=\"demo\"} 3\n"), "{m}");
        assert!(m.contains("vngate_bindings{namespace=\"demo\"} 2\n"), "{m}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_reaches_the_loop_and_its_answer_the_client() {
        let dir = std::env::temp_dir().join(format!("vngate-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, mut rx) = listen(&dir).unwrap();
        let client = tokio::spawn(async move {
            let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
            s.write_all(b"{\"cmd\":\"metrics\"}\n").await.unwrap();
            let mut out = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out).await.unwrap();
            out
        });
        let (req, reply) = rx.recv().await.unwrap();
        assert_eq!(req, Request::Metrics);
        answer(reply, "hello".into());
        assert_eq!(client.await.unwrap(), "hello");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
