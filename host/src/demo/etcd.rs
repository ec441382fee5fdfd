//! The etcd of `demo --fleet`: either one the user already runs (`--etcd http://IP:PORT`) or a
//! single throw-away member this module starts on free loopback ports with its data in a temp
//! dir, killed and removed when the demo ends. A real etcd, never a stand-in: the demo shows
//! what the fleet guarantee does against the store it is proven on.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long a freshly started member may take to report healthy.
const START_LIMIT: Duration = Duration::from_secs(20);

/// The etcd the demo's proxies share.
pub struct DemoEtcd {
    /// Its client address (what the proxies' `etcd` cluster points at).
    pub client: SocketAddr,
    /// The member the demo started (`None`: the user's own etcd).
    owned: Option<OwnedMember>,
}

struct OwnedMember {
    child: Child,
    dir: PathBuf,
}

impl DemoEtcd {
    /// Uses the etcd at `url` (`http://IP:PORT`; the demo's clusters are STATIC, so an IP).
    ///
    /// # Errors
    /// `url` is not `http://IP:PORT`, or nothing healthy answers there.
    pub async fn external(url: &str) -> anyhow::Result<DemoEtcd> {
        let client = parse_url(url)?;
        if !healthy(client).await {
            bail!("--etcd {url:?}: no healthy etcd answers GET /health there");
        }
        Ok(DemoEtcd {
            client,
            owned: None,
        })
    }

    /// Starts one member from the `etcd` binary on `PATH`.
    ///
    /// # Errors
    /// `etcd` is not installed, cannot start, or is not healthy within 20 s (its log is in the
    /// error).
    pub async fn start() -> anyhow::Result<DemoEtcd> {
        let bin = find_on_path("etcd").context(
            "demo --fleet needs etcd: install it (Debian/Ubuntu: apt-get install etcd-server) \
             or point the demo at a running one with --etcd http://IP:PORT",
        )?;
        let client: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let peer: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let dir = std::env::temp_dir().join(format!(
            "failover-demo-etcd-{}-{}",
            std::process::id(),
            client.port()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log = std::fs::File::create(dir.join("etcd.log"))
            .with_context(|| format!("cannot create {}", dir.join("etcd.log").display()))?;
        let child = Command::new(&bin)
            .args(["--name", "demo"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &format!("http://{client}")])
            .args(["--advertise-client-urls", &format!("http://{client}")])
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("demo=http://{peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let etcd = DemoEtcd {
            client,
            owned: Some(OwnedMember { child, dir }),
        };
        let deadline = Instant::now() + START_LIMIT;
        while !healthy(client).await {
            if Instant::now() >= deadline {
                let log = etcd.log_tail();
                bail!(
                    "etcd on {client} not healthy within {}s; its log:\n{log}",
                    START_LIMIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(etcd)
    }

    /// Where the data lives, for the screen: the temp dir of a started member, or "yours".
    pub fn describe(&self) -> String {
        match &self.owned {
            Some(m) => format!(
                "etcd {} (started by the demo, data in {})",
                self.client,
                m.dir.display()
            ),
            None => format!("etcd {} (--etcd)", self.client),
        }
    }

    fn log_tail(&self) -> String {
        let Some(m) = &self.owned else {
            return String::new();
        };
        let text = std::fs::read_to_string(m.dir.join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for DemoEtcd {
    fn drop(&mut self) {
        if let Some(m) = &mut self.owned {
            let _ = m.child.kill();
            let _ = m.child.wait();
            let _ = std::fs::remove_dir_all(&m.dir);
        }
    }
}

/// `http://IP:PORT` (an optional trailing `/`) → the address.
fn parse_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("--etcd {url:?}: expected http://IP:PORT (etcd's client URL, plain HTTP)")
    })?;
    rest.trim_end_matches('/').parse().with_context(|| {
        format!("--etcd {url:?}: expected http://IP:PORT with an IP address, e.g. http://127.0.0.1:2379")
    })
}

/// `GET /health` answers `{"health":"true"}` within a second.
async fn healthy(addr: SocketAddr) -> bool {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = format!("http://{addr}/health").parse::<http::Uri>() else {
        return false;
    };
    let answer = tokio::time::timeout(Duration::from_secs(1), async {
        let resp = client.get(uri).await.ok()?;
        resp.into_body().collect().await.ok().map(|b| b.to_bytes())
    })
    .await
    .ok()
    .flatten();
    answer
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["health"] == "true")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port for etcd")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etcd_url_must_be_http_ip_port() {
        assert_eq!(
            parse_url("http://127.0.0.1:2379/").unwrap(),
            "127.0.0.1:2379".parse::<SocketAddr>().unwrap()
        );
        let e = parse_url("https://127.0.0.1:2379").unwrap_err().to_string();
        assert!(
            e.contains("--etcd") && e.contains("https://127.0.0.1:2379"),
            "{e}"
        );
        let e = parse_url("http://etcd:2379").unwrap_err().to_string();
        assert!(e.contains("with an IP address"), "{e}");
    }
}
