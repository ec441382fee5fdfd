//! Draining a listener (reload, shutdown) without a Wasm filter: the drain signal never waits
//! for a request in flight, a connection accepted just before the drain still gets its answer,
//! and a reload keeps the listening sockets (issue 14 item 5).

use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use failover_host::bootstrap::{parse, Bootstrap, LoadOptions};
use failover_host::proxy::{bind_reuseport, serve, Clusters, ListenerContext, Router};
use failover_host::server::{ServeOptions, Server};
use failover_testkit::send::wire::{get, header, http};
use failover_testkit::upstream::raw as upstream;
use failover_testkit::BootstrapBuilder;
use tokio::sync::watch;

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn load(yaml: &str) -> Bootstrap {
    parse("test.yaml".as_ref(), yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// One worker as the server runs it (current_thread runtime + LocalSet) serving the first
/// listener of `b` on a fresh socket until `drain` says so; returns the address and the thread.
fn worker(b: Bootstrap, drain: watch::Receiver<bool>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let sock = bind_reuseport(b.listeners[0].address, 1)
        .expect("bind")
        .remove(0);
    let addr = sock.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, async move {
            let clusters = Clusters::new(&b.clusters).expect("clusters");
            clusters.start_dns();
            let l = &b.listeners[0];
            let ctx = Rc::new(ListenerContext {
                name: l.name.clone(),
                local_addr: addr,
                filters: Vec::new(),
                router: Rc::new(Router::new(l, clusters)),
                chain: Default::default(),
            });
            let listener = tokio::net::TcpListener::from_std(sock).expect("listener");
            serve(listener, ctx, drain, Duration::from_secs(10)).await;
        });
    });
    (addr, handle)
}

/// The drain signal is sent again while a drained connection still waits for its upstream
/// (`Generation::stop` did so). The connection held the watch channel's read lock across its
/// request, so that second send blocked until the request ended, and the next reader on the
/// worker then blocked the worker thread for good.
#[test]
fn a_drain_signal_never_waits_for_a_request_in_flight() {
    let (up, seen) = upstream("slow");
    let b = load(&BootstrapBuilder::one_route(any(), "slow", &[("slow", up)]).to_yaml());
    let (stop, drain) = watch::channel(false);
    let (addr, handle) = worker(b, drain);

    // A request that stays in flight (the upstream never answers /hang; the route times out).
    let mut client = TcpStream::connect(addr).expect("connect");
    let in_flight = std::thread::spawn(move || {
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        http(
            &mut client,
            "GET /hang HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
        )
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.heads.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    stop.send(true).expect("first drain signal");
    // Let the connection see the drain and go back to waiting for its answer.
    std::thread::sleep(Duration::from_millis(300));
    let (done_tx, done_rx) = mpsc::channel();
    let stop = std::sync::Arc::new(stop);
    let sender = stop.clone();
    std::thread::spawn(move || {
        let _ = sender.send(true);
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(2)).is_ok(),
        "a second drain signal waited for the request in flight (a watch::Ref held across an await)"
    );

    // The request still gets its (route-timeout) answer, with `connection: close`, and the
    // worker ends.
    let (status, headers, _) = in_flight.join().unwrap().expect("answer");
    assert_eq!(status, 504);
    assert_eq!(header(&headers, "connection"), Some("close"));
    handle.join().expect("worker");
}

/// hyper's graceful shutdown closes a connection on which nothing has been read yet at once;
/// a client that connected just before the drain and sends its request just after must still
/// get its answer (with `connection: close`), as in Envoy.
#[test]
fn a_connection_accepted_just_before_the_drain_gets_its_answer() {
    let (up, _) = upstream("alpha");
    let b = load(&BootstrapBuilder::one_route(any(), "alpha", &[("alpha", up)]).to_yaml());
    let (stop, drain) = watch::channel(false);
    let (addr, handle) = worker(b, drain);

    let mut client = TcpStream::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The worker accepts it (it is idle), then the drain comes before the request does.
    std::thread::sleep(Duration::from_millis(200));
    stop.send(true).expect("drain signal");
    std::thread::sleep(Duration::from_millis(100));
    let (status, headers, body) = http(
        &mut client,
        "GET /late HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
    )
    .expect("the request sent after the drain got no answer");
    assert_eq!((status, body.as_str()), (200, "alpha /late "));
    assert_eq!(header(&headers, "connection"), Some("close"));
    handle.join().expect("worker");
}

/// Listening TCP sockets on `port`: their inode numbers (IPv4, `/proc/net/tcp`, state LISTEN).
fn listening_inodes(port: u16) -> Vec<String> {
    let needle = format!(":{port:04X}");
    let mut inodes: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.get(1)?.ends_with(&needle) && cols.get(3) == Some(&"0A"))
                .then(|| cols.get(9).map(|s| s.to_string()))
                .flatten()
        })
        .collect();
    inodes.sort();
    inodes
}

/// A reload keeps the sockets of a listener whose address did not change (the new workers
/// accept on duplicates of them): nothing queued on a socket is lost, and a port-0 listener
/// keeps its port. Connections keep being answered across reloads, and no socket is left over.
#[test]
fn a_reload_keeps_the_listening_sockets() {
    let (up, seen) = upstream("alpha");
    let yaml = BootstrapBuilder::one_route(any(), "alpha", &[("alpha", up)]).to_yaml();
    let mut server = Server::start(
        load(&yaml),
        ServeOptions {
            concurrency: 2,
            state_file: None,
            drain_time: Duration::from_secs(1),
        },
    )
    .expect("start");
    let addr = server.listener_addrs()[0].1;
    let before = listening_inodes(addr.port());
    assert_eq!(before.len(), 2, "one socket per worker");
    for i in 0..5 {
        server.reload(load(&yaml)).expect("reload");
        assert_eq!(
            server.listener_addrs()[0].1,
            addr,
            "reload {i} moved the listener"
        );
        assert_eq!(listening_inodes(addr.port()), before, "reload {i}");
        let (status, _, body) = get(addr, &format!("/after/{i}"), "");
        assert_eq!((status, body), (200, format!("alpha /after/{i} ")));
    }
    assert!(seen.connections.load(Ordering::SeqCst) > 0);
    server.shutdown();
    assert!(
        listening_inodes(addr.port()).is_empty(),
        "sockets left after shutdown"
    );
}
