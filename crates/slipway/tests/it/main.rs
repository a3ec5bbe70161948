//! Integration tests: the real `slipway` binary (server and CLI) against the real Docker
//! engine, with the example app's FROM-scratch images. One test binary for the crate.

mod support;
mod testbed;

mod access;
mod apps;
mod aws;
mod bad_input;
mod build_run;
mod cli_output;
mod concurrency;
mod console;
mod copilot;
mod crash;
mod deploy;
mod elb;
mod everyday;
mod failures;
mod fields;
mod hosts;
mod ingress;
mod ingress_tls;
mod init;
mod isolation;
mod jobs;
mod limits;
mod metrics;
mod ops;
mod probe_safety;
mod progressive;
mod protocol_edges;
mod readme;
mod registry;
mod routes;
mod scripts;
mod secrets_files;
mod sidecars;
mod standby;
mod supervision;
mod traces;
mod triggers;
mod watch;
mod workflow;
