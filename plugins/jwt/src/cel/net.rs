//! kube-apiserver's IP and CIDR CEL libraries (`ip("10.0.0.1").family()`,
//! `cidr("10.0.0.0/8").containsIP(...)`), with Go's `net/netip` rules:
//! IPv4-mapped IPv6 addresses and zones are refused, as are leading zeros.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cel::objects::Opaque;

/// An IP address value (`net.IP`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        "net.IP"
    }
}

/// A prefix value (`net.CIDR`): the address as written and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        "net.CIDR"
    }
}

/// Parse an address as kube-apiserver's `ip()` does.
///
/// # Errors
///
/// Why `text` is not an address this library accepts.
pub fn parse_ip(text: &str) -> Result<IpAddr, String> {
    if text.contains('%') {
        return Err(format!("IP address with zone value is not allowed: {text}"));
    }
    let addr: IpAddr = text.parse().map_err(|_| format!("IP Address {text:?} parse error"))?;
    if let IpAddr::V6(v6) = addr
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(format!("IPv4-mapped IPv6 address is not allowed: {text}"));
    }
    Ok(addr)
}

/// Parse a prefix as kube-apiserver's `cidr()` does.
///
/// # Errors
///
/// Why `text` is not a prefix this library accepts.
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let bad = || format!("network address parse error during conversion from string: {text:?}");
    let (addr, bits) = text.split_once('/').ok_or_else(bad)?;
    let addr = parse_ip(addr).map_err(|_| bad())?;
    // Decimal without sign or leading zeros, as Go's netip.ParsePrefix wants.
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || (bits.len() > 1 && bits.starts_with('0')) {
        return Err(bad());
    }
    let bits: u8 = bits.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(bad());
    }
    Ok(Cidr { addr, bits })
}

/// `string(ip)`: Go's canonical form (RFC 5952 for IPv6).
pub fn ip_string(addr: &IpAddr) -> String {
    addr.to_string()
}

pub fn family(addr: &IpAddr) -> i64 {
    if addr.is_ipv4() { 4 } else { 6 }
}

pub fn is_unspecified(addr: &IpAddr) -> bool {
    addr.is_unspecified()
}

pub fn is_loopback(addr: &IpAddr) -> bool {
    addr.is_loopback()
}

pub fn is_link_local_multicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    }
}

pub fn is_link_local_unicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.octets()[..2] == [169, 254],
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Go's rule: private ranges count as global unicast too.
pub fn is_global_unicast(addr: &IpAddr) -> bool {
    if let IpAddr::V4(v4) = addr
        && (*v4 == Ipv4Addr::UNSPECIFIED || *v4 == Ipv4Addr::BROADCAST)
    {
        return false;
    }
    !addr.is_unspecified() && !addr.is_loopback() && !addr.is_multicast() && !is_link_local_unicast(addr)
}

fn bits_of(addr: &IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

fn mask(addr: &IpAddr, bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let m = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(*v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(*v6) & m))
        }
    }
}

impl Cidr {
    /// Whether `addr` is inside the prefix (same family only).
    pub fn contains_ip(&self, addr: &IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && bits_of(&mask(addr, self.bits)) == bits_of(&self.masked().addr)
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        self.bits <= other.bits && self.contains_ip(&other.addr)
    }

    /// The prefix with the host bits cleared.
    pub fn masked(&self) -> Cidr {
        Cidr { addr: mask(&self.addr, self.bits), bits: self.bits }
    }
}

/// `string(cidr)`: the address as written, then the length.
pub fn cidr_string(cidr: &Cidr) -> String {
    format!("{}/{}", cidr.addr, cidr.bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_netip_does() {
        assert!(parse_ip("10.0.0.1").is_ok());
        assert!(parse_ip("2001:db8::1").is_ok());
        assert!(parse_ip("::ffff:1.2.3.4").unwrap_err().contains("IPv4-mapped"));
        assert!(parse_ip("fe80::1%eth0").unwrap_err().contains("zone"));
        assert!(parse_ip("010.0.0.1").is_err(), "leading zeros");
        assert!(parse_ip("1.2.3").is_err());
        assert_eq!(ip_string(&parse_ip("2001:DB8:0:0:0:0:0:1").unwrap()), "2001:db8::1");
    }

    #[test]
    fn address_classes_follow_go() {
        let ip = |s| parse_ip(s).unwrap();
        assert!(is_loopback(&ip("127.0.0.1")) && is_loopback(&ip("::1")));
        assert!(is_unspecified(&ip("0.0.0.0")) && is_unspecified(&ip("::")));
        assert!(is_link_local_multicast(&ip("224.0.0.251")) && is_link_local_multicast(&ip("ff02::1")));
        assert!(!is_link_local_multicast(&ip("224.0.1.1")));
        assert!(is_link_local_unicast(&ip("169.254.1.1")) && is_link_local_unicast(&ip("fe80::1")));
        assert!(is_global_unicast(&ip("10.0.0.1")) && is_global_unicast(&ip("2001:db8::1")));
        assert!(!is_global_unicast(&ip("255.255.255.255")) && !is_global_unicast(&ip("ff00::1")));
        assert_eq!((family(&ip("1.2.3.4")), family(&ip("::2"))), (4, 6));
    }

    #[test]
    fn prefixes_contain_addresses_and_prefixes() {
        let net = parse_cidr("10.1.2.3/8").unwrap();
        assert_eq!(cidr_string(&net), "10.1.2.3/8", "kept as written");
        assert_eq!(cidr_string(&net.masked()), "10.0.0.0/8");
        assert!(net.contains_ip(&parse_ip("10.200.0.1").unwrap()));
        assert!(!net.contains_ip(&parse_ip("11.0.0.1").unwrap()));
        assert!(!net.contains_ip(&parse_ip("::a00:1").unwrap()), "another family");
        assert!(net.contains_cidr(&parse_cidr("10.2.0.0/16").unwrap()));
        assert!(!net.contains_cidr(&parse_cidr("10.0.0.0/7").unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err() && parse_cidr("10.0.0.0/08").is_err());
        assert!(parse_cidr("10.0.0.0").is_err() && parse_cidr("::ffff:1.2.3.4/96").is_err());
        assert!(parse_cidr("2001:db8::/32").unwrap().contains_ip(&parse_ip("2001:db8:1::1").unwrap()));
    }
}
