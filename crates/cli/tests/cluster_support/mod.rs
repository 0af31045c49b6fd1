//! Shared by the cluster tests: a real `redis-server` and a fault proxy.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod redis_server;
