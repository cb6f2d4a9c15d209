//! Interfaces, their MTU, and which one carries the default route.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Interface {
    pub name: String,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetProbe {
    pub interfaces: Vec<Interface>,
    pub default_route_interface: Option<String>,
    pub default_route_mtu: Option<u32>,
    /// Non-loopback IPv4 addresses of interfaces that are up: (interface, address).
    /// Read with getifaddrs, so only for the real root.
    pub ipv4_addrs: Vec<(String, Ipv4Addr)>,
}

/// The non-loopback IPv4 addresses of this network namespace's interfaces that are up.
pub fn ipv4_addrs() -> Vec<(String, Ipv4Addr)> {
    use nix::net::if_::InterfaceFlags;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| a.flags.contains(InterfaceFlags::IFF_UP))
        .filter_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some((a.interface_name, ip))
        })
        .collect()
}

/// The interface of the IPv4 default route in `/proc/net/route` (destination
/// and mask 0, flag RTF_UP), lowest metric first.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            (f[1] == "00000000" && f[7] == "00000000" && flags & 1 == 1)
                .then(|| (metric, f[0].to_string()))
        })
        .min_by_key(|(m, _)| *m)
        .map(|(_, name)| name)
}

pub fn probe_net(root: &Path) -> NetProbe {
    let mut interfaces: Vec<Interface> = std::fs::read_dir(root.join("sys/class/net"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let mtu = std::fs::read_to_string(e.path().join("mtu"))
                        .ok()
                        .and_then(|t| t.trim().parse().ok());
                    Interface { name, mtu }
                })
                .collect()
        })
        .unwrap_or_default();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    let default_route_interface = std::fs::read_to_string(root.join("proc/net/route"))
        .ok()
        .and_then(|t| default_route_interface(&t));
    let default_route_mtu = default_route_interface
        .as_ref()
        .and_then(|n| interfaces.iter().find(|i| &i.name == n))
        .and_then(|i| i.mtu);
    NetProbe {
        interfaces,
        default_route_interface,
        default_route_mtu,
        ipv4_addrs: if root == Path::new("/") {
            ipv4_addrs()
        } else {
            Vec::new()
        },
    }
}

/// `/etc/hostname`, else the kernel's.
pub fn hostname(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .map(|h| h.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Every address of every interface, loopback included (upstream's SAN list).
pub fn interface_ips() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| a.address)
                .filter_map(|s| {
                    s.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                })
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_up_default_route_with_lowest_metric() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
                 eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                 eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_interface(t).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }
}
