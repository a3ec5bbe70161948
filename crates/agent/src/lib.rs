//! Hosts and their agents: how a cluster of several Docker hosts is run.
//!
//! - [`proto`]: what the leading server asks of a host's agent, and the answers, over one
//!   upgraded HTTP connection the agent opens (hosts need no inbound port).
//! - [`hub`]: the server's side: the connected agents, calls to them, their events.
//! - [`hosts`]: every engine of the cluster as one — the server's own host in-process and
//!   each connected agent — for the controller and the application layer.
//! - [`agent`]: `slipway agent`, the host's side: join, connect, answer, probe, and keep
//!   tasks running while the server is away.
//! - [`probe`]: the HTTP health probe every host runs.
//! - [`discovery`]: service names across hosts (a resolver and a proxy per service on each
//!   host).
//!
//! This crate may call Docker (through `slipway-runtime`) and the network; it keeps no
//! state of its own beyond the agent's identity file.

pub mod agent;
pub mod discovery;
pub mod hosts;
pub mod hub;
pub mod probe;
pub mod proto;

pub use hosts::{HostError, Hosts, Listing, RemoteRegistry};
pub use hub::{Hub, HubError};
