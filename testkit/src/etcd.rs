//! A real etcd cluster on loopback for the fleet suites: `n` members (`etcd` 3.4 from the
//! Debian package `etcd-server`), each with free client and peer ports and its own data dir in
//! a temp dir. Members can be killed, stopped and restarted; everything is killed and removed
//! when the [`EtcdCluster`] is dropped. Never a mock store: the fleet's guarantee is only as
//! good as the store it was proven against.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{free_port, get, send};

/// The `etcd` binary, if installed (`apt-get install etcd-server`).
pub fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// One member.
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    child: Option<Child>,
}

/// A running etcd cluster (see the module docs).
pub struct EtcdCluster {
    bin: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits (≤ 30 s) until every one answers `/health` true.
    pub async fn start(n: usize) -> EtcdCluster {
        let bin = etcd_binary().expect("etcd not installed (apt-get install -y etcd-server)");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("etcd{i}"),
                client: ([127, 0, 0, 1], free_port()).into(),
                peer: ([127, 0, 0, 1], free_port()).into(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            bin,
            members,
            initial_cluster,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_healthy(Duration::from_secs(30)).await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let data = self.dir.path().join(&self.members[i].name);
        let m = &mut self.members[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name)))
            .expect("etcd log file");
        let child = Command::new(&self.bin)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &format!("http://{}", m.client)])
            .args(["--advertise-client-urls", &format!("http://{}", m.client)])
            .args(["--listen-peer-urls", &format!("http://{}", m.peer)])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{}", m.peer),
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "failover-test"])
            // Quick elections on loopback: a killed leader is replaced within a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        m.child = Some(child);
    }

    /// Client addresses, one per member.
    pub fn clients(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client).collect()
    }

    /// Waits until every running member reports healthy.
    pub async fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            loop {
                let healthy = get(m.client, "/health")
                    .await
                    .ok()
                    .and_then(|a| serde_json::from_slice::<Value>(&a.body).ok())
                    .is_some_and(|v| v["health"] == "true");
                if healthy {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member {} not healthy within {limit:?}:\n{}",
                    m.name,
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// `kill -9` member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops member `i` gracefully (SIGTERM), waiting for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data dir (a no-op while it runs).
    pub fn restart(&mut self, i: usize) {
        if self.members[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// The members' stderr logs, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {} ---\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Reads `key` through the JSON gateway of the first running member: the value as JSON
    /// (`None` when missing or no member answers).
    pub async fn get_json(&self, key: &str) -> Option<Value> {
        let body = json!({ "key": base64_encode(key.as_bytes()) }).to_string();
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let Ok(a) = send(
                m.client,
                "POST",
                "/v3/kv/range",
                &[("content-type", "application/json")],
                body.clone(),
            )
            .await
            else {
                continue;
            };
            if a.status != 200 {
                continue;
            }
            let v: Value = serde_json::from_slice(&a.body).ok()?;
            let value = v["kvs"][0]["value"].as_str()?;
            return serde_json::from_slice(&base64_decode(value)?).ok();
        }
        None
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (etcd's bytes fields).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; `None` on a bad character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "f", "fo", "foo", "/failover/v1"] {
            let e = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&e).as_deref(), Some(s.as_bytes()), "{e}");
        }
        assert_eq!(base64_encode(b"fl/v1"), "ZmwvdjE=");
    }
}
