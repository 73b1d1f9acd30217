//! Per-client limits: open connections, requests at once and requests per second, by client
//! address.
//!
//! A client address is an IPv4 address or an IPv6 /64 (one subscriber's allocation: counting every
//! address of a /64 apart would let one machine take 2^64 budgets). Counts are kept only while an
//! address has a connection open, so the table is bounded by `api.max_connections`; the rate
//! limiter's table (`governor`, GCRA) is swept of idle addresses as connections come.

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key a client is counted under.
pub(super) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// The limits, from `[api]` in the configuration.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    pub max_connections: usize,
    pub connections_per_address: usize,
    pub concurrent_per_address: usize,
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// Addresses (as keyed by [`client_key`]) without per-address limits.
    pub exempt: Vec<IpAddr>,
}

impl Limits {
    pub(super) fn from_config(cfg: &crate::config::Api) -> Limits {
        Limits {
            max_connections: cfg.max_connections,
            connections_per_address: cfg.max_connections_per_address,
            concurrent_per_address: cfg.max_concurrent_per_address,
            per_second: NonZeroU32::new(cfg.requests_per_second_per_address).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(cfg.burst_per_address).unwrap_or(NonZeroU32::MIN),
            exempt: cfg.exempt_addresses.iter().map(|a| client_key(*a)).collect(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    connections: usize,
    in_flight: usize,
}

#[derive(Debug, Default)]
struct Table {
    open: usize,
    by_address: HashMap<IpAddr, Counts>,
}

/// Every client's counts.
#[derive(Debug)]
pub(super) struct Clients {
    limits: Limits,
    /// Open connections, exported (`sabt_api_connections`).
    open_gauge: crate::consensus::telemetry::Gauge,
    table: Mutex<Table>,
    rate: DefaultKeyedRateLimiter<IpAddr>,
    accepted: AtomicU64,
}

/// Why a request was refused before its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The address has more connections open than it may use.
    Connections { limit: usize },
    /// The address has its limit of requests in progress.
    Concurrent { limit: usize },
    /// The address made its requests for now; it may make the next after `retry_after`.
    Rate { retry_after: Duration },
}

/// An open connection, counted until dropped.
#[derive(Debug)]
pub(super) struct Connection {
    clients: Arc<Clients>,
    key: IpAddr,
    /// Whether the address had more connections open than it may use when this one opened: its
    /// requests are refused, but for health probes.
    pub over_cap: bool,
    /// Whether the address is exempt from the per-address limits (`api.exempt_addresses`).
    exempt: bool,
}

/// A request in progress, counted until dropped.
#[derive(Debug)]
pub(super) struct Flight {
    clients: Arc<Clients>,
    key: IpAddr,
}

impl Clients {
    pub(super) fn new(limits: Limits, open_gauge: crate::consensus::telemetry::Gauge) -> Arc<Clients> {
        Arc::new(Clients {
            open_gauge,
            rate: RateLimiter::keyed(Quota::per_second(limits.per_second).allow_burst(limits.burst)),
            limits,
            table: Mutex::new(Table::default()),
            accepted: AtomicU64::new(0),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection from `ip`; `None` if the node has its limit of connections open.
    pub(super) fn connect(self: &Arc<Self>, ip: IpAddr) -> Option<Connection> {
        if self.accepted.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.rate.retain_recent();
        }
        let key = client_key(ip);
        let mut t = self.table();
        if t.open >= self.limits.max_connections {
            return None;
        }
        t.open += 1;
        self.open_gauge.set(i64::try_from(t.open).unwrap_or(i64::MAX));
        let c = t.by_address.entry(key).or_default();
        c.connections += 1;
        let exempt = self.limits.exempt.contains(&key);
        let over_cap = !exempt && c.connections > self.limits.connections_per_address;
        Some(Connection { clients: self.clone(), key, over_cap, exempt })
    }

    /// Open connections, from every address.
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.table().open
    }

    /// Whether `conn` was opened within its address's connections: every request on a connection
    /// beyond them is refused, whatever it claims to be.
    pub(super) fn within_connections(&self, conn: &Connection) -> Result<(), Refusal> {
        if conn.over_cap {
            return Err(Refusal::Connections { limit: self.limits.connections_per_address });
        }
        Ok(())
    }

    /// Admits a request from `conn`'s address: on a connection within its cap, within its rate,
    /// and within its requests at once.
    pub(super) fn start(self: &Arc<Self>, conn: &Connection) -> Result<Flight, Refusal> {
        self.within_connections(conn)?;
        if !conn.exempt {
            self.charge(conn.key)?;
        }
        let mut t = self.table();
        let c = t.by_address.entry(conn.key).or_default();
        if !conn.exempt && c.in_flight >= self.limits.concurrent_per_address {
            return Err(Refusal::Concurrent { limit: self.limits.concurrent_per_address });
        }
        c.in_flight += 1;
        Ok(Flight { clients: self.clone(), key: conn.key })
    }

    /// Takes one request from `key`'s rate.
    pub(super) fn charge(&self, key: IpAddr) -> Result<(), Refusal> {
        self.rate
            .check_key(&key)
            .map_err(|not_until| Refusal::Rate { retry_after: not_until.wait_time_from(self.rate.clock().now()) })
    }

    fn release(&self, key: IpAddr, connection: bool) {
        let mut t = self.table();
        if connection {
            t.open = t.open.saturating_sub(1);
            self.open_gauge.set(i64::try_from(t.open).unwrap_or(i64::MAX));
        }
        let Some(c) = t.by_address.get_mut(&key) else { return };
        if connection {
            c.connections = c.connections.saturating_sub(1);
        } else {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        if c.connections == 0 && c.in_flight == 0 {
            t.by_address.remove(&key);
        }
    }
}

impl Connection {
    /// The address this connection is counted under.
    pub(super) fn key(&self) -> IpAddr {
        self.key
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.clients.release(self.key, true);
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.clients.release(self.key, false);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 4,
            connections_per_address: 2,
            concurrent_per_address: 1,
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
            exempt: vec![ip("10.0.0.9")],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_subscriber_is_one_client_and_a_mapped_ipv4_is_its_ipv4() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), client_key(ip("2001:db8:1:2:bbbb::2")));
        assert_ne!(client_key(ip("2001:db8:1:2::1")), client_key(ip("2001:db8:1:3::1")));
        assert_eq!(client_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_ne!(client_key(ip("10.0.0.1")), client_key(ip("10.0.0.2")));
    }

    #[test]
    fn connections_beyond_an_address_cap_are_marked_and_the_node_cap_refuses() {
        let c = Clients::new(limits(), Default::default());
        let a1 = c.connect(ip("10.0.0.1")).unwrap();
        let a2 = c.connect(ip("10.0.0.1")).unwrap();
        let a3 = c.connect(ip("10.0.0.1")).unwrap();
        assert!(!a1.over_cap && !a2.over_cap && a3.over_cap, "the third from one address is over its cap");
        assert_eq!(c.start(&a3).unwrap_err(), Refusal::Connections { limit: 2 });
        let b = c.connect(ip("10.0.0.2")).unwrap();
        assert!(!b.over_cap, "another address has its own cap");
        assert!(c.connect(ip("10.0.0.3")).is_none(), "the node's cap of 4 is reached");
        drop(a3);
        assert_eq!(c.open(), 3);
        assert!(c.connect(ip("10.0.0.3")).is_some(), "a closed connection frees its place");
        drop((a1, a2, b));
        assert!(c.table().by_address.len() <= 1, "addresses without connections are forgotten");
    }

    #[test]
    fn requests_at_once_and_per_second_are_limited_per_address() {
        let c = Clients::new(limits(), Default::default());
        let a = c.connect(ip("10.0.0.1")).unwrap();
        let b = c.connect(ip("10.0.0.2")).unwrap();
        let first = c.start(&a).unwrap();
        assert_eq!(c.start(&a).unwrap_err(), Refusal::Concurrent { limit: 1 });
        let other = c.start(&b).unwrap();
        drop(first);
        drop(c.start(&a).unwrap());
        // The burst of 3 is spent (three admitted or refused for concurrency each took one).
        match c.start(&a).unwrap_err() {
            Refusal::Rate { retry_after } => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1))
            }
            other => panic!("expected a rate refusal, got {other:?}"),
        }
        drop(other);
        assert!(c.start(&b).is_ok(), "another address keeps its own rate");
    }

    #[test]
    fn an_exempt_address_has_no_per_address_limits_but_counts_towards_the_nodes() {
        let c = Clients::new(limits(), Default::default());
        let conns: Vec<Connection> = (0..4).map(|_| c.connect(ip("10.0.0.9")).unwrap()).collect();
        assert!(conns.iter().all(|c| !c.over_cap));
        let flights: Vec<Flight> = (0..10).map(|_| c.start(&conns[0]).unwrap()).collect();
        assert_eq!(flights.len(), 10, "neither its requests at once nor its rate are limited");
        assert!(c.connect(ip("10.0.0.1")).is_none(), "its connections count towards the node's cap");
    }
}
