//! Trusted-proxy networks in CIDR notation, and the API's timestamps.

use etx_core::net::IpNet;
use etx_core::time::{rfc3339, write_rfc3339};
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn networks_contain_their_addresses_only() {
    let n: IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(n.contains(ip("10.255.1.2")));
    assert!(!n.contains(ip("11.0.0.1")));
    // An IPv4 client seen through an IPv6 socket is still matched.
    assert!(n.contains(ip("::ffff:10.1.2.3")));
    assert!(!n.contains(ip("fe80::1")), "families never match");

    let one: IpNet = " 192.0.2.7 ".parse().unwrap();
    assert!(one.contains(ip("192.0.2.7")));
    assert!(!one.contains(ip("192.0.2.8")));

    let all: IpNet = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("203.0.113.9")));

    let v6: IpNet = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains(ip("2001:db8:ffff::1")));
    assert!(!v6.contains(ip("2001:db9::1")));
    assert!(!v6.contains(ip("10.0.0.1")));
    let all6: IpNet = "::/0".parse().unwrap();
    assert!(all6.contains(ip("::1")));
    let loopback: IpNet = "::1".parse().unwrap();
    assert!(loopback.contains(ip("::1")) && !loopback.contains(ip("::2")));

    // A mapped IPv4 network is taken as the IPv4 network it names.
    let mapped: IpNet = "::ffff:127.0.0.1".parse().unwrap();
    assert_eq!(String::from(mapped), "127.0.0.1/32");
    assert!(mapped.contains(ip("127.0.0.1")));
}

#[test]
fn bad_networks_are_refused_with_the_text() {
    for bad in [
        "",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/x",
        "10.0.0/8",
        "host/8",
        "1.2.3.4/-1",
    ] {
        let e = bad.parse::<IpNet>().unwrap_err();
        assert!(e.contains("CIDR") && e.contains(&format!("{bad:?}")), "{e}");
    }
}

#[test]
fn networks_round_trip_through_settings_text() {
    let n: IpNet = serde_json::from_str("\"172.16.0.0/12\"").unwrap();
    assert_eq!(serde_json::to_string(&n).unwrap(), "\"172.16.0.0/12\"");
    assert_eq!(
        IpNet::try_from("::1".to_string()).unwrap(),
        "::1/128".parse().unwrap()
    );
    let e = serde_json::from_str::<IpNet>("\"nope\"").unwrap_err();
    assert!(e.to_string().contains("CIDR"), "{e}");
}

#[test]
fn timestamps_are_utc_with_milliseconds() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_700_000_000_123_456), "2023-11-14T22:13:20.123Z");
    // Before 1970.
    assert_eq!(rfc3339(-1_000), "1969-12-31T23:59:59.999Z");
    // Appends to what the buffer holds.
    let mut out = String::from("at ");
    write_rfc3339(&mut out, 86_400_000_000);
    assert_eq!(out, "at 1970-01-02T00:00:00.000Z");
}

#[test]
fn timestamps_outside_four_digit_years_fall_back_to_chrono() {
    use chrono::{DateTime, SecondsFormat, Utc};
    // Year 10000 and a year before 0.
    for micros in [
        253_402_300_800_000_000i64,
        -62_198_755_200_000_000 - 86_400_000_000,
    ] {
        let expected = DateTime::<Utc>::from_timestamp_micros(micros)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        assert_eq!(rfc3339(micros), expected);
    }
    // Out of chrono's range: the epoch rather than a panic.
    assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00.000Z");
}
