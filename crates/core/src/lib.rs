//! Slipway's pure core: the domain model, the `slipway.yml` manifest and the deployment
//! planner.
//!
//! This crate owns every decision that can be made without touching the outside world, and
//! does no I/O: no files, no network, no clock (time is an argument). The shells around it
//! (`slipway-store`, `slipway-runtime`, `slipway-controller`, `slipway-api`) gather inputs,
//! call into this crate and carry out what it decides.
//!
//! - [`manifest`] parses and validates `slipway.yml` and compiles it into service specs.
//! - [`model`] holds the domain types shared by every shell (services, task definitions,
//!   deployments, tasks, events).
//! - [`elb`] load balancers, target groups, listeners and rules (ELBv2) and the routes
//!   they give services.
//! - [`diff`] compares what runs with what a deploy would apply.
//! - [`health`] turns raw container observations into a task's health.
//! - [`placement`] picks the host of a task (ECS strategies, constraints and resources).
//! - [`planner`] turns desired and observed state into actions.
//! - [`schema`] generates the JSON Schema of `slipway.yml` from the manifest's types.

pub mod access;
pub mod copilot;
pub mod diff;
pub mod elb;
pub mod health;
pub mod jobs;
pub mod manifest;
pub mod model;
pub mod placement;
pub mod planner;
pub mod rollout;
pub mod schedule;
pub mod schema;
pub mod timeline;
