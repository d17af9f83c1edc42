//! Loopback ports for the servers the tests start as child processes (nginx, Redis, moto, a
//! PostgreSQL of their own, the `etx` binary).

/// A base port with it and the next `n` free, below the kernel's ephemeral range: the child binds
/// it only seconds after this check (the cluster's nginx once its instances are up), and a port
/// in that range can meanwhile go to one of the many outgoing connections (database, Redis,
/// HTTP clients) the tests open.
pub fn free_ports(n: u16) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let (low, high) = if ephemeral_low > 11_000 + u32::from(n) {
        (10_000, ephemeral_low - 1 - u32::from(n))
    } else {
        (10_000, 30_000)
    };
    loop {
        let seed = uuid::Uuid::new_v4().as_u128();
        let base = (low + (seed % u128::from(high - low)) as u32) as u16;
        let free = (0..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
}
