//! The address classes, the URL checks and the redirect verdicts. Classification only: no test
//! here sends a packet (the refused connections to loopback are in `tests/it/outbound.rs`).

use super::*;

fn class(text: &str) -> Option<&'static str> {
    is_forbidden(text.parse().expect("an IP address"))
}

#[test]
fn every_forbidden_ipv4_class_is_named() {
    let cases = [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "this-network"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("127.255.255.255", "loopback"),
        ("169.254.0.1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("192.0.0.8", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("192.88.99.1", "reserved"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
    ];
    for (address, expected) in cases {
        assert_eq!(class(address), Some(expected), "{address}");
    }
}

#[test]
fn public_ipv4_addresses_pass() {
    for address in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "172.15.255.255",
        "172.32.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "169.253.255.255",
        "192.167.255.255",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "11.0.0.0",
        "126.255.255.255",
        "128.0.0.0",
    ] {
        assert_eq!(class(address), None, "{address}");
    }
}

#[test]
fn every_forbidden_ipv6_class_is_named() {
    let cases = [
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fd00:ec2::254", "metadata"),
        ("fe80::1", "link-local"),
        ("febf:ffff::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("ff05::2", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("2001:2::1", "benchmarking"),
        ("2001:10::1", "reserved"),
        ("100::1", "reserved"),
        ("4000::1", "reserved"),
        ("::808:808", "ipv4-compatible"),
        ("64:ff9b:1::1", "nat64-local"),
    ];
    for (address, expected) in cases {
        assert_eq!(class(address), Some(expected), "{address}");
    }
}

#[test]
fn ipv6_forms_that_embed_ipv4_are_judged_by_the_ipv4_address() {
    let cases = [
        // IPv4-mapped and translated: refused even when public (never a DNS answer).
        ("::ffff:127.0.0.1", Some("loopback")),
        ("::ffff:10.1.2.3", Some("private")),
        ("::ffff:169.254.169.254", Some("metadata")),
        ("::ffff:8.8.8.8", Some("ipv4-mapped")),
        ("::ffff:0:127.0.0.1", Some("loopback")),
        // IPv4-compatible.
        ("::127.0.0.1", Some("loopback")),
        ("::192.168.0.1", Some("private")),
        // NAT64: the gateway reaches the embedded address.
        ("64:ff9b::7f00:1", Some("loopback")),
        ("64:ff9b::a9fe:a9fe", Some("metadata")),
        ("64:ff9b::808:808", None),
        // 6to4: 2002:AABB:CCDD::.
        ("2002:7f00:1::1", Some("loopback")),
        ("2002:c0a8:101::1", Some("private")),
        ("2002:808:808::1", None),
        // Teredo: client address inverted in the last 32 bits (127.0.0.1 -> 80ff:fffe).
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", Some("loopback")),
        ("2001:0:a00:1::f7f7:f7f7", Some("private")),
    ];
    for (address, expected) in cases {
        assert_eq!(class(address), expected, "{address}");
    }
}

#[test]
fn public_ipv6_addresses_pass() {
    for address in ["2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:82a::200e"] {
        assert_eq!(class(address), None, "{address}");
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("a URL")
}

#[test]
fn literal_hosts_are_checked_before_any_request() {
    let refused = [
        ("http://127.0.0.1/a", "loopback"),
        ("http://127.0.0.2:8080/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        // Other spellings of 127.0.0.1 that URL parsing normalises.
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://017700000001/", "loopback"),
    ];
    for (text, expected) in refused {
        assert_eq!(check_url(&url(text), false), Err(OutboundError::Refused { class: expected }), "{text}");
        assert_eq!(check_url(&url(text), true), Ok(()), "{text} with private networks allowed");
    }
    // Names are judged when they resolve.
    assert_eq!(check_url(&url("https://example.com/a.png"), false), Ok(()));
}

#[test]
fn urls_are_http_without_credentials_and_short() {
    assert_eq!(check_url(&url("ftp://example.com/a"), true), Err(OutboundError::Scheme("ftp".into())));
    assert_eq!(check_url(&url("file:///etc/passwd"), true), Err(OutboundError::Scheme("file".into())));
    assert_eq!(check_url(&url("https://user:pw@example.com/a"), true), Err(OutboundError::Credentials));
    assert_eq!(check_url(&url("https://user@example.com/a"), true), Err(OutboundError::Credentials));
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
    assert!(matches!(parse_url(&long, true), Err(OutboundError::InvalidUrl(_))));
    assert!(matches!(parse_url("not a url", true), Err(OutboundError::InvalidUrl(_))));
    assert!(parse_url("https://example.com/a.png", false).is_ok());
}

#[test]
fn redirects_to_forbidden_literals_or_too_many_are_refused() {
    let allowed = url("https://example.com/next");
    assert_eq!(redirect_verdict(&allowed, 0, false), Ok(()));
    assert_eq!(redirect_verdict(&allowed, MAX_REDIRECTS - 1, false), Ok(()));
    assert_eq!(redirect_verdict(&allowed, MAX_REDIRECTS, false), Err(OutboundError::TooManyRedirects));
    for (text, expected) in [
        ("http://127.0.0.1:9/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://10.0.0.5/", "private"),
        ("http://169.254.169.254/", "metadata"),
        ("http://[::ffff:192.168.0.1]/", "private"),
    ] {
        assert_eq!(redirect_verdict(&url(text), 1, false), Err(OutboundError::Refused { class: expected }), "{text}");
    }
    assert_eq!(redirect_verdict(&url("gopher://example.com/"), 1, true), Err(OutboundError::Scheme("gopher".into())));
    assert_eq!(redirect_verdict(&url("http://127.0.0.1:9/"), 1, true), Ok(()));
}

#[test]
fn the_resolver_keeps_only_allowed_addresses() {
    let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let metadata: SocketAddr = "[fd00:ec2::254]:0".parse().unwrap();
    assert_eq!(GuardedResolver::filter([loopback, public]), Ok(vec![public]));
    assert_eq!(GuardedResolver::filter([metadata, loopback]), Err(OutboundError::Refused { class: "metadata" }));
    assert!(matches!(GuardedResolver::filter([]), Err(OutboundError::Network(_))));
}
