//! Connection counts, total and per client IP: one limiter for WebSockets
//! (`limits.max_connections[_per_ip]`), one for connections in the HTTP
//! phase (`limits.max_http_connections[_per_ip]`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counts of open connections, total and per IP: one for WebSockets, one
/// for connections in the HTTP phase.
#[derive(Debug)]
pub struct ConnLimiter {
    /// Changed by a reload; slots already held stay held.
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was refused by the limiter.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitError {
    /// Too many in all.
    Total,
    /// Too many from this IP.
    PerIp,
}

/// A held slot; released on drop.
#[derive(Debug)]
pub struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    /// `None`: counted in the total only.
    ip: Option<IpAddr>,
}

impl ConnLimiter {
    /// Limits.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            inner: Mutex::new((0, HashMap::new())),
        })
    }

    /// New limits for connections from now on (a reload).
    pub fn set_limits(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// Take a slot for `ip`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, LimitError> {
        self.acquire_for(Some(ip))
    }

    /// Take a slot for `ip`, or in the total only (`None`: a connection
    /// from a trusted proxy carries many clients).
    pub fn acquire_for(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnSlot, LimitError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 >= self.max_total.load(Ordering::Relaxed) {
            return Err(LimitError::Total);
        }
        if let Some(ip) = ip {
            let n = g.1.entry(ip).or_insert(0);
            if *n >= self.max_per_ip.load(Ordering::Relaxed) {
                return Err(LimitError::PerIp);
            }
            *n += 1;
        }
        g.0 += 1;
        Ok(ConnSlot {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut g = self.limiter.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        let Some(ip) = self.ip else {
            return;
        };
        if let Some(n) = g.1.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_per_ip_and_total() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.acquire(a).unwrap();
        let _s2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).unwrap_err(), LimitError::PerIp);
        let _s3 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(b).unwrap_err(), LimitError::Total);
        drop(s1);
        assert!(l.acquire(a).is_ok());
    }

    #[test]
    fn unkeyed_slots_count_in_the_total_only() {
        let l = ConnLimiter::new(3, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _p1 = l.acquire_for(None).unwrap();
        let _p2 = l.acquire_for(None).unwrap();
        let s = l.acquire(a).unwrap();
        assert_eq!(l.acquire_for(None).unwrap_err(), LimitError::Total);
        drop(s);
        assert!(l.acquire_for(None).is_ok());
    }
}
