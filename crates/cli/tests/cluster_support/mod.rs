//! Shared by the cluster tests: real `redis-server` and `nats-server` processes and a fault proxy.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod nats_server;
pub mod process;
pub mod redis_server;
