//! Service discovery across hosts: a service's tasks reach the other services of their app
//! environment by name (`api`, or `api.ENV.APP.internal`) on whichever host those run.
//!
//! On one host, Docker's DNS on the app environment's network answers those names with the
//! local containers. Across hosts it cannot, so each host of a cluster of several runs:
//! - a **resolver** at [`RESOLVER`] (an address on the host's loopback interface) that the
//!   containers' DNS points at. Docker's DNS forwards it the names it does not know; it
//!   answers a service name of the asker's app environment (found by the asker's address)
//!   with the service's virtual address, and forwards every other name to the host's own
//!   resolvers;
//! - a **proxy** on each service's virtual address and port (also on the loopback
//!   interface): a connection is relayed to one of the service's healthy tasks, on any
//!   host (where the task's port is published), round robin, the next one when a connect
//!   fails. Only containers of the service's own app environment (its network's subnet on
//!   this host) are served: environments stay apart.
//!
//! The server sends the map (services, virtual addresses, endpoints) whenever it changes.
//! Virtual addresses come from `198.18.0.0/15` (RFC 2544: never routed on the Internet).
//!
//! May call: `slipway_runtime` (network subnets), tokio, hickory-proto (DNS messages), and
//! the `ip` command (addresses on `lo`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
use serde::{Deserialize, Serialize};
use slipway_core::model::ServiceKey;
use slipway_runtime::DockerRuntime;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Where containers' DNS queries for names Docker does not know arrive.
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);

/// One service as discovery sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub key: ServiceKey,
    /// Its virtual address: what its name resolves to.
    pub vip: Ipv4Addr,
    pub port: u16,
    /// Where its healthy tasks answer (`host:published port`, any host).
    pub endpoints: Vec<SocketAddr>,
}

/// Every service of the cluster that has a port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMap {
    pub cluster: String,
    pub services: Vec<ServiceEntry>,
    /// Where every task of the cluster that is not stopped is published (`host:port`,
    /// healthy or not): each host keeps its containers from connecting there (see
    /// [`slipway_runtime::isolation`]).
    #[serde(default)]
    pub published: Vec<SocketAddr>,
}

/// Virtual addresses for `keys`: a hash of each key into `198.18.1.0`–`198.19.255.254`,
/// the next free one on a clash (in the order given: oldest service first, so an address,
/// once given, stays).
pub fn assign_vips(keys: &[ServiceKey]) -> BTreeMap<ServiceKey, Ipv4Addr> {
    const FIRST: u32 = u32::from_be_bytes([198, 18, 1, 0]);
    const SIZE: u32 = (1 << 17) - 256;
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for k in keys {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in k.to_string().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut n = (h % u64::from(SIZE)) as u32;
        loop {
            let ip = Ipv4Addr::from(FIRST + n);
            let last = ip.octets()[3];
            if last != 0 && last != 255 && taken.insert(ip) {
                out.insert(k.clone(), ip);
                break;
            }
            n = (n + 1) % SIZE;
        }
    }
    out
}

/// A host's resolver and proxies.
pub struct Discovery {
    rt: DockerRuntime,
    state: Mutex<State>,
    /// The host's own resolvers (from `/etc/resolv.conf`), where other names go.
    upstream: Vec<SocketAddr>,
}

#[derive(Default)]
struct State {
    map: Arc<ServiceMap>,
    /// Listening proxies by (address, port).
    listeners: HashMap<(Ipv4Addr, u16), tokio::task::AbortHandle>,
    /// Addresses this process added to `lo`.
    addrs: BTreeSet<Ipv4Addr>,
    /// Subnets of the app environments' networks on this host, by network name.
    subnets: HashMap<String, Vec<(Ipv4Addr, u8)>>,
    next: HashMap<(Ipv4Addr, u16), Arc<AtomicUsize>>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `ip/32` to `lo` (already there is fine).
async fn add_address(ip: Ipv4Addr) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .await
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || err.contains("File exists") || err.contains("already assigned") {
        Ok(())
    } else {
        Err(format!("ip addr add {ip}/32 dev lo: {}", err.trim()))
    }
}

async fn remove_address(ip: Ipv4Addr) {
    let _ = tokio::process::Command::new("ip")
        .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .await;
}

fn in_subnet(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

impl Discovery {
    /// Starts the resolver; `None` (with a warning) when this host cannot (no permission to
    /// add an address): its containers then keep the host's DNS, and names of services on
    /// other hosts do not resolve there.
    pub async fn start(rt: DockerRuntime) -> Option<Arc<Discovery>> {
        if let Err(e) = add_address(RESOLVER).await {
            tracing::warn!(error = %e, "service discovery across hosts is off on this host");
            return None;
        }
        let socket = match UdpSocket::bind((RESOLVER, 53)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "service discovery across hosts is off on this host: cannot listen for DNS");
                return None;
            }
        };
        let upstream = std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
            .filter(|a| *a != std::net::IpAddr::V4(RESOLVER))
            .map(|a| SocketAddr::new(a, 53))
            .collect();
        let d = Arc::new(Discovery {
            rt,
            state: Mutex::new(State::default()),
            upstream,
        });
        lock(&d.state).addrs.insert(RESOLVER);
        tokio::spawn(d.clone().serve_dns(Arc::new(socket)));
        tracing::info!(resolver = %RESOLVER, "service discovery across hosts is on");
        Some(d)
    }

    /// The DNS servers of this host's containers: the resolver, then the host's own (which
    /// Docker's DNS uses for other names if the resolver does not answer).
    pub fn dns(&self) -> Vec<String> {
        std::iter::once(RESOLVER.to_string())
            .chain(
                self.upstream
                    .iter()
                    .filter(|a| !a.ip().is_loopback())
                    .map(|a| a.ip().to_string()),
            )
            .collect()
    }

    /// Takes a new map: proxies for new services, none for gone ones.
    pub async fn apply(self: &Arc<Self>, map: ServiceMap) {
        let wanted: BTreeSet<(Ipv4Addr, u16)> =
            map.services.iter().map(|s| (s.vip, s.port)).collect();
        let (stale, fresh) = {
            let mut st = lock(&self.state);
            st.map = Arc::new(map);
            let stale: Vec<(Ipv4Addr, u16)> = st
                .listeners
                .keys()
                .filter(|k| !wanted.contains(k))
                .copied()
                .collect();
            for k in &stale {
                if let Some(h) = st.listeners.remove(k) {
                    h.abort();
                }
            }
            let fresh: Vec<(Ipv4Addr, u16)> = wanted
                .iter()
                .filter(|k| !st.listeners.contains_key(k))
                .copied()
                .collect();
            (stale, fresh)
        };
        for (ip, port) in fresh {
            if let Err(e) = add_address(ip).await {
                tracing::warn!(error = %e, "cannot add a service address");
                continue;
            }
            lock(&self.state).addrs.insert(ip);
            match TcpListener::bind((ip, port)).await {
                Ok(l) => {
                    let h = tokio::spawn(self.clone().serve_proxy(l, ip, port));
                    lock(&self.state)
                        .listeners
                        .insert((ip, port), h.abort_handle());
                }
                Err(e) => tracing::warn!(%ip, port, error = %e, "cannot listen for a service"),
            }
        }
        // Addresses no proxy uses any more leave `lo`.
        let unused: Vec<Ipv4Addr> = {
            let st = lock(&self.state);
            st.addrs
                .iter()
                .filter(|a| **a != RESOLVER && !st.listeners.keys().any(|(ip, _)| ip == *a))
                .copied()
                .collect()
        };
        for ip in unused {
            remove_address(ip).await;
            lock(&self.state).addrs.remove(&ip);
        }
        if !stale.is_empty() {
            tracing::debug!(count = stale.len(), "service proxies closed");
        }
    }

    /// The app environment whose network (on this host) holds `ip`.
    async fn environment_of(&self, ip: Ipv4Addr) -> Option<(String, String)> {
        let map = lock(&self.state).map.clone();
        let mut envs: BTreeMap<String, (String, String)> = BTreeMap::new();
        for s in &map.services {
            envs.entry(s.key.network_for(&map.cluster))
                .or_insert_with(|| (s.key.app.clone(), s.key.env.clone()));
        }
        for (network, env) in envs {
            if self
                .subnets(&network)
                .await
                .iter()
                .any(|n| in_subnet(ip, *n))
            {
                return Some(env);
            }
        }
        None
    }

    /// A network's subnets on this host (looked up once).
    async fn subnets(&self, network: &str) -> Vec<(Ipv4Addr, u8)> {
        if let Some(s) = lock(&self.state).subnets.get(network) {
            return s.clone();
        }
        let s = self.rt.network_subnets(network).await.unwrap_or_default();
        if !s.is_empty() {
            lock(&self.state)
                .subnets
                .insert(network.to_owned(), s.clone());
        }
        s
    }

    async fn serve_dns(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let query = buf[..n].to_vec();
            let me = self.clone();
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Some(answer) = me.answer(&query, from).await {
                    let _ = socket.send_to(&answer, from).await;
                }
            });
        }
    }

    /// The answer to one query: a service's address, or what the host's resolvers say.
    async fn answer(&self, query: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let msg = Message::from_vec(query).ok()?;
        let q = msg.queries().first()?.clone();
        let name = q
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let asker = match from.ip() {
            std::net::IpAddr::V4(ip) => self.environment_of(ip).await,
            std::net::IpAddr::V6(_) => None,
        };
        let found = asker.and_then(|(app, env)| {
            let map = lock(&self.state).map.clone();
            map.services
                .iter()
                .find(|s| {
                    s.key.app == app
                        && s.key.env == env
                        && (name == s.key.name
                            || name == format!("{}.{}.{}.internal", s.key.name, env, app))
                })
                .map(|s| s.vip)
        });
        match found {
            Some(vip) => {
                let mut r = Message::new();
                r.set_id(msg.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(msg.op_code())
                    .set_recursion_desired(msg.recursion_desired())
                    .set_recursion_available(true)
                    .set_authoritative(true)
                    .add_query(q.clone());
                if q.query_type() == RecordType::A {
                    r.add_answer(Record::from_rdata(q.name().clone(), 5, RData::A(A(vip))));
                }
                r.to_vec().ok()
            }
            // A bare name or one under `.internal` is a service name or nothing: no
            // resolver elsewhere knows it, so say so at once.
            None if !name.contains('.') || name.ends_with(".internal") => {
                let mut r = Message::new();
                r.set_id(msg.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(msg.op_code())
                    .set_recursion_desired(msg.recursion_desired())
                    .set_recursion_available(true)
                    .set_response_code(ResponseCode::NXDomain)
                    .add_query(q.clone());
                r.to_vec().ok()
            }
            None => self.forward(query, &msg).await,
        }
    }

    /// Asks the host's resolvers; SERVFAIL if none answers.
    async fn forward(&self, query: &[u8], msg: &Message) -> Option<Vec<u8>> {
        for up in &self.upstream {
            let Ok(sock) = UdpSocket::bind(if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).await
            else {
                continue;
            };
            if sock.send_to(query, up).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await
            {
                buf.truncate(n);
                return Some(buf);
            }
        }
        let mut r = Message::new();
        r.set_id(msg.id())
            .set_message_type(MessageType::Response)
            .set_op_code(msg.op_code())
            .set_response_code(ResponseCode::ServFail);
        for q in msg.queries() {
            r.add_query(q.clone());
        }
        r.to_vec().ok()
    }

    async fn serve_proxy(self: Arc<Self>, l: TcpListener, ip: Ipv4Addr, port: u16) {
        loop {
            let Ok((conn, peer)) = l.accept().await else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move { me.relay(conn, peer, ip, port).await });
        }
    }

    async fn relay(&self, mut conn: TcpStream, peer: SocketAddr, ip: Ipv4Addr, port: u16) {
        let (key, endpoints, next) = {
            let mut st = lock(&self.state);
            let Some(s) = st
                .map
                .services
                .iter()
                .find(|s| s.vip == ip && s.port == port)
                .cloned()
            else {
                return;
            };
            let next = st.next.entry((ip, port)).or_default().clone();
            (s.key, s.endpoints, next)
        };
        // Only the service's own app environment.
        let std::net::IpAddr::V4(peer_ip) = peer.ip() else {
            return;
        };
        let network = key.network_for(&lock(&self.state).map.cluster);
        if !self
            .subnets(&network)
            .await
            .iter()
            .any(|n| in_subnet(peer_ip, *n))
        {
            tracing::debug!(%peer, service = %key, "refused: not of the service's app environment");
            return;
        }
        if endpoints.is_empty() {
            return;
        }
        let first = next.fetch_add(1, Ordering::Relaxed);
        for i in 0..endpoints.len() {
            let to = endpoints[(first + i) % endpoints.len()];
            if let Ok(Ok(mut up)) =
                tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(to)).await
            {
                let _ = up.set_nodelay(true);
                let _ = conn.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                return;
            }
        }
        tracing::debug!(service = %key, "no task of the service answered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_addresses_are_distinct_stable_and_in_range() {
        let keys: Vec<ServiceKey> = (0..2000)
            .map(|i| ServiceKey::new(format!("app{}", i % 37), "default", format!("s{i}")))
            .collect();
        let a = assign_vips(&keys);
        let distinct: BTreeSet<&Ipv4Addr> = a.values().collect();
        assert_eq!(distinct.len(), keys.len());
        for ip in a.values() {
            let o = ip.octets();
            assert!(o[0] == 198 && (o[1] == 18 || o[1] == 19), "{ip}");
            assert!(!(o[1] == 18 && o[2] == 0), "{ip} is in the reserved /24");
            assert!(o[3] != 0 && o[3] != 255, "{ip}");
        }
        // A service keeps its address when services created after it come and go.
        let fewer = assign_vips(&keys[..100]);
        for (k, ip) in &fewer {
            assert_eq!(a[k], *ip);
        }
    }

    #[test]
    fn subnets() {
        let net = (Ipv4Addr::new(172, 18, 0, 0), 16);
        assert!(in_subnet(Ipv4Addr::new(172, 18, 3, 4), net));
        assert!(!in_subnet(Ipv4Addr::new(172, 19, 0, 1), net));
        assert!(in_subnet(
            Ipv4Addr::new(1, 2, 3, 4),
            (Ipv4Addr::UNSPECIFIED, 0)
        ));
    }
}
