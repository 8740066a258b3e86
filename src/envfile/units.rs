//! Sizes, durations, ports and addresses as Envfile strings spell them.

use std::net::Ipv4Addr;

use super::model::{Ipv4Net, PortMap, Protocol};

/// Parses `512M`, `1G`, `1GiB`, `2048MB`, `100K` into bytes. Binary units (K, M, G, T,
/// KiB...) are powers of 1024; KB, MB, GB, TB are powers of 1000.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("`{s}` does not start with a number"));
    }
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{num}` is not a number"))?;
    let mult: u64 = match unit.trim() {
        "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "" => return Err(format!("`{s}` has no unit")),
        other => return Err(format!("`{other}` is not a size unit")),
    };
    let bytes = n * mult as f64;
    if !(bytes.is_finite()) || bytes < 1.0 || bytes > (1u64 << 50) as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses `500ms`, `2s`, `1m`, `1h` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a whole number"))?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("`{s}` has no unit")),
        other => return Err(format!("`{other}` is not a duration unit")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is out of range"))
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(format!("port {n} is outside 1-65535")),
        Err(_) => Err(format!("`{s}` is not a port number")),
    }
}

/// Parses `GUEST`, `HOST:GUEST`, `IP:HOST:GUEST`, each optionally ending in `/tcp` or `/udp`.
pub fn parse_port_map(s: &str) -> Result<PortMap, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, p)) => return Err(format!("`{p}` is not a protocol (tcp or udp)")),
        None => (s, Protocol::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host, guest) = match parts.as_slice() {
        [g] => (None, None, parse_port(g)?),
        [h, g] => (None, Some(parse_port(h)?), parse_port(g)?),
        [ip, h, g] => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
            (Some(ip), Some(parse_port(h)?), parse_port(g)?)
        }
        _ => return Err(format!("`{s}` has too many `:`")),
    };
    Ok(PortMap {
        host_ip,
        host,
        guest,
        protocol,
    })
}

/// Parses `10.42.0.0/24`. The prefix must leave room for a gateway and at least one host.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` has no prefix length (like `/24`)"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|n| *n <= 32)
        .ok_or_else(|| format!("`/{p}` is not a prefix length (0-32)"))?;
    if prefix > 29 {
        return Err(format!(
            "`/{prefix}` leaves too few addresses for a gateway and machines"
        ));
    }
    if prefix < 8 {
        return Err(format!(
            "`/{prefix}` is wider than a private network should be"
        ));
    }
    let net = Ipv4Net { addr, prefix };
    if net.network() != addr {
        return Err(format!(
            "`{s}` has host bits set; the network is `{}/{prefix}`",
            net.network()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("512").is_err());
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("2 weeks").is_err());
    }

    #[test]
    fn ports() {
        let p = parse_port_map("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(
            (p.host, p.guest, p.protocol),
            (Some(8080), 80, Protocol::Udp)
        );
        assert_eq!(parse_port_map("80").unwrap().host, None);
        assert!(parse_port_map("99999:80").is_err());
        assert!(parse_port_map("80/sctp").is_err());
    }

    #[test]
    fn subnets() {
        let n = parse_subnet("10.42.0.0/24").unwrap();
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 42, 0, 1));
        assert!(n.contains(Ipv4Addr::new(10, 42, 0, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 42, 1, 2)));
        assert!(parse_subnet("10.42.0.1/24").is_err());
        assert!(parse_subnet("10.42.0.0/33").is_err());
        assert!(parse_subnet("10.42.0.0").is_err());
    }
}
