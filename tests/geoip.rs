//! The geoip table: Tor's text formats, the compact binary form, lookups at
//! range edges and gaps, IPv4-mapped addresses, corrupt tables (never a
//! panic), and the table embedded by build.rs.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use snowflake_broker::geoip::{self, parse_tor_geoip, Table, TableRef};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

const V4: &str = "\
# Tor geoip fixture: <int start>,<int end>,<CC>
#
16777216,16777471,AU
16777472,16778239,cn\r
16778240,16779263,AU

  # an indented comment
16779264,16779264,??
 16779265 , 16779270 , JP
2170617856,2170683391,CA
4294967040,4294967295,ZZ
";

const V6: &str = "\
# Tor geoip6 fixture: <addr start>,<addr end>,<CC>
::ffff:0.0.0.0,::ffff:255.255.255.255,AQ
2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP
2001:208::,2001:208:ffff:ffff:ffff:ffff:ffff:ffff,SG
2001:20a::,2001:20a:ffff:ffff:ffff:ffff:ffff:ffff,SG
2a00::,2a00:0:ffff:ffff:ffff:ffff:ffff:ffff,??
ffff::,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,EU
";

fn fixture() -> Table {
    match parse_tor_geoip(V4, V6) {
        Ok(t) => t,
        Err(e) => panic!("fixture does not parse: {e}"),
    }
}

fn encoded(t: &Table) -> (Vec<u8>, Vec<u8>) {
    match t.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("cannot encode: {e}"),
    }
}

fn table_ref<'a>(bytes: &'a (Vec<u8>, Vec<u8>)) -> TableRef<'a> {
    match TableRef::new(&bytes.0, &bytes.1).and_then(|t| t.verify().map(|()| t)) {
        Ok(t) => t,
        Err(e) => panic!("encoded table does not validate: {e}"),
    }
}

fn ip(s: &str) -> IpAddr {
    match s.parse() {
        Ok(ip) => ip,
        Err(e) => panic!("{s}: {e}"),
    }
}

/// Looks `addr` up in the parsed table and in its encoded form, which must
/// agree, and returns the answer.
fn lookup(t: &Table, r: &TableRef<'_>, addr: &str) -> Option<String> {
    let a = t.country(ip(addr)).map(str::to_string);
    let b = r.country(ip(addr)).map(str::to_string);
    assert_eq!(a, b, "parsed and encoded tables disagree on {addr}");
    a
}

#[test]
fn ipv4_edges_and_gaps() {
    let t = fixture();
    let bytes = encoded(&t);
    let r = table_ref(&bytes);
    let cases = [
        ("0.0.0.0", None),
        ("0.255.255.255", None),
        ("1.0.0.0", Some("AU")),
        ("1.0.0.255", Some("AU")),
        ("1.0.1.0", Some("CN")), // lower case in the file, CRLF line
        ("1.0.3.255", Some("CN")),
        ("1.0.4.0", Some("AU")),
        ("1.0.7.255", Some("AU")),
        ("1.0.8.0", None), // `??`
        ("1.0.8.1", Some("JP")),
        ("1.0.8.6", Some("JP")),
        ("1.0.8.7", None), // gap
        ("129.96.255.255", None),
        ("129.97.0.0", Some("CA")),
        ("129.97.208.23", Some("CA")), // docs/protocol.md §9 test geoip line
        ("129.97.208.24", Some("CA")),
        ("129.97.255.255", Some("CA")),
        ("129.98.0.0", None),
        ("255.255.254.255", None),
        ("255.255.255.0", Some("ZZ")),
        ("255.255.255.255", Some("ZZ")),
    ];
    for (addr, want) in cases {
        assert_eq!(lookup(&t, &r, addr).as_deref(), want, "{addr}");
    }
}

#[test]
fn ipv6_edges_and_gaps() {
    let t = fixture();
    let bytes = encoded(&t);
    let r = table_ref(&bytes);
    let cases = [
        ("::", None),
        ("::1", None),
        ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:200::", Some("JP")),
        ("2001:200:ffff:ffff:ffff:ffff:ffff:ffff", Some("JP")),
        ("2001:201::", None),
        ("2001:208::1", Some("SG")),
        ("2001:209::", None), // gap between two SG ranges
        ("2001:20a::", Some("SG")),
        ("2a00::1", None), // `??`
        ("fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("ffff::", Some("EU")),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("EU")),
    ];
    for (addr, want) in cases {
        assert_eq!(lookup(&t, &r, addr).as_deref(), want, "{addr}");
    }
}

#[test]
fn ipv4_mapped_ipv6_uses_the_ipv4_table() {
    // The IPv6 fixture maps all of ::ffff:0:0/96 to AQ; mapped addresses
    // must ignore that and use the IPv4 table, as Go's `To4` does.
    let t = fixture();
    let bytes = encoded(&t);
    let r = table_ref(&bytes);
    assert_eq!(
        lookup(&t, &r, "::ffff:129.97.208.23").as_deref(),
        Some("CA")
    );
    assert_eq!(lookup(&t, &r, "::ffff:1.0.8.0").as_deref(), None);
    assert_eq!(
        lookup(&t, &r, "::ffff:255.255.255.255").as_deref(),
        Some("ZZ")
    );
    // IPv4-compatible (::a.b.c.d) is an ordinary IPv6 address.
    assert_eq!(lookup(&t, &r, "::129.97.208.23").as_deref(), None);
}

#[test]
fn tor_test_geoip_line() {
    // docs/protocol.md §9: broker/test_geoip's line for the metrics tests.
    let t = match parse_tor_geoip("2170617856,2170683391,CA\n", "") {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let bytes = encoded(&t);
    let r = table_ref(&bytes);
    assert_eq!(lookup(&t, &r, "129.97.208.23").as_deref(), Some("CA"));
    assert_eq!(lookup(&t, &r, "129.97.208.24").as_deref(), Some("CA"));
    assert_eq!(lookup(&t, &r, "129.96.255.255"), None);
    assert_eq!(lookup(&t, &r, "129.98.0.0"), None);
    assert_eq!(lookup(&t, &r, "2001:db8::1"), None);
}

#[test]
fn adjacent_ranges_with_one_country_are_merged() {
    let t = match parse_tor_geoip("0,9,US\n10,19,US\n20,29,??\n30,39,US\n40,49,CA\n", "") {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let starts: Vec<(u128, Option<[u8; 2]>)> = t.v4.iter().map(|b| (b.start, b.country)).collect();
    assert_eq!(
        starts,
        vec![
            (0, Some(*b"US")),
            (20, None),
            (30, Some(*b"US")),
            (40, Some(*b"CA")),
            (50, None),
        ]
    );
    assert!(t.v6.is_empty());
}

#[test]
fn unsorted_input_is_sorted() {
    let t = match parse_tor_geoip(
        "100,199,US\n0,49,CA\n",
        "2001:200::,2001:200::ff,JP\n::1,::1,DE\n",
    ) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let bytes = encoded(&t);
    let r = table_ref(&bytes);
    assert_eq!(lookup(&t, &r, "0.0.0.49").as_deref(), Some("CA"));
    assert_eq!(lookup(&t, &r, "0.0.0.50"), None);
    assert_eq!(lookup(&t, &r, "0.0.0.150").as_deref(), Some("US"));
    assert_eq!(lookup(&t, &r, "::1").as_deref(), Some("DE"));
    assert_eq!(lookup(&t, &r, "2001:200::80").as_deref(), Some("JP"));
}

#[test]
fn empty_and_comment_only_files_give_empty_tables() {
    for (v4, v6) in [("", ""), ("# only\n#comments\n\n", "\n \n# x\n")] {
        let t = match parse_tor_geoip(v4, v6) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(t, Table::default());
        let bytes = encoded(&t);
        assert!(bytes.0.is_empty() && bytes.1.is_empty());
        let r = table_ref(&bytes);
        assert!(r.is_empty());
        assert_eq!(r.country(ip("129.97.208.23")), None);
    }
}

#[test]
fn bad_lines_are_errors_with_file_and_line_number() {
    let v4_cases = [
        ("1,2\n", "geoip line 1:"),
        ("# c\n1,2,US,extra\n", "geoip line 2:"),
        ("\n\nx,2,US\n", "geoip line 3:"),
        ("5,4,US\n", "geoip line 1:"),
        ("1,2,USA\n", "geoip line 1:"),
        ("1,2,U!\n", "geoip line 1:"),
        ("1,2,\n", "geoip line 1:"),
        ("-1,2,US\n", "geoip line 1:"),
        ("4294967296,4294967296,US\n", "geoip line 1:"),
        ("1.2.3.4,1.2.3.5,US\n", "geoip line 1:"),
        (
            "1,10,US\n# c\n5,20,CA\n",
            "geoip line 3: range overlaps the range on line 1",
        ),
        (
            "5,20,CA\n1,5,US\n",
            "geoip line 2: range overlaps the range on line 1",
        ),
        (
            "7,7,CA\n7,7,US\n",
            "geoip line 2: range overlaps the range on line 1",
        ),
    ];
    for (text, want) in v4_cases {
        match parse_tor_geoip(text, "") {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => assert!(e.starts_with(want), "{text:?}: got {e:?}, want {want:?}"),
        }
    }
    let v6_cases = [
        ("2001::,zz,US\n", "geoip6 line 1:"),
        ("# c\n1,2,US\n", "geoip6 line 2:"),
        ("2001::1,2001::,US\n", "geoip6 line 1:"),
        ("::,::1\n", "geoip6 line 1:"),
        ("::,::1,U\n", "geoip6 line 1:"),
        ("::1,::5,US\n::5,::6,CA\n", "geoip6 line 2: range overlaps"),
    ];
    for (text, want) in v6_cases {
        match parse_tor_geoip("", text) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => assert!(e.starts_with(want), "{text:?}: got {e:?}, want {want:?}"),
        }
    }
}

#[test]
fn empty_table_knows_nothing() {
    let r = TableRef::empty();
    assert!(r.is_empty());
    assert_eq!(r.len(), (0, 0));
    for a in ["0.0.0.0", "129.97.208.23", "::ffff:1.2.3.4", "2001:db8::1"] {
        assert_eq!(r.country(ip(a)), None);
    }
    let none = match TableRef::new(&[], &[]) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert!(none.is_empty());
}

#[test]
fn block_index_is_used_across_many_ranges() {
    // 1000 one-/24 ranges alternating between three countries, with a gap
    // every seventh: many 64-entry blocks.
    let mut v4 = String::new();
    let mut v6 = String::new();
    let codes = ["US", "DE", "FR"];
    for i in 0u32..1000 {
        if i % 7 == 3 {
            continue;
        }
        let cc = codes.get(i as usize % 3).copied().unwrap_or("US");
        let start = 0x0100_0000 + i * 256;
        v4.push_str(&format!("{},{},{cc}\n", start, start + 255));
        let s6 = (0x2001_0db8u128 << 96) + (u128::from(i) << 80);
        v6.push_str(&format!(
            "{},{},{cc}\n",
            Ipv6Addr::from(s6),
            Ipv6Addr::from(s6 + (1u128 << 80) - 1)
        ));
    }
    let t = match parse_tor_geoip(&v4, &v6) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let bytes = encoded(&t);
    let r = table_ref(&bytes);
    assert!(r.len().0 > 64 * 10 && r.len().1 > 64 * 10, "{:?}", r.len());
    for b in &t.v4 {
        for a in [b.start - 1, b.start, b.start + 1] {
            let ip = IpAddr::V4(Ipv4Addr::from(a as u32));
            assert_eq!(t.country(ip), r.country(ip), "{ip}");
        }
    }
    for b in &t.v6 {
        for a in [b.start - 1, b.start, b.start + 1] {
            let ip = IpAddr::V6(Ipv6Addr::from(a));
            assert_eq!(t.country(ip), r.country(ip), "{ip}");
        }
    }
    // /24 deltas cost one byte, the country index one more.
    assert!(
        bytes.0.len() < 12 + 6 + 16 * 8 + r.len().0 * 2,
        "{}",
        bytes.0.len()
    );
}

#[test]
fn every_truncation_of_an_encoded_table_is_refused() {
    let bytes = encoded(&fixture());
    for (family, blob) in [("v4", &bytes.0), ("v6", &bytes.1)] {
        for n in 1..blob.len() {
            let cut = blob.get(..n).unwrap_or(&[]);
            let r = if family == "v4" {
                TableRef::new(cut, &[])
            } else {
                TableRef::new(&[], cut)
            };
            assert!(r.is_err(), "{family} cut to {n} bytes was accepted");
        }
    }
    // Families swapped: the width byte does not match.
    assert!(TableRef::new(&bytes.1, &bytes.0).is_err());
}

#[test]
fn a_malformed_block_answers_unknown_and_fails_verify() {
    // 300 adjacent /24s alternating US/DE: five 64-entry blocks.
    let v4: String = (0u32..300)
        .map(|i| {
            let start = 0x0a00_0000 + i * 256;
            let cc = if i % 2 == 0 { "US" } else { "DE" };
            format!("{start},{},{cc}\n", start + 255)
        })
        .collect();
    let t = match parse_tor_geoip(&v4, "") {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let (mut blob, v6) = encoded(&t);
    // Layout (module docs): 12-byte header, 2 dictionary codes, 5 index
    // records of 4 + 4 bytes, then the data. Block 2's first byte is its
    // first entry's country index; 0x7f is not in the dictionary.
    let records = 12 + 2 * 2;
    let offset_of_block_2 = {
        let rec = blob
            .get(records + 2 * 8 + 4..records + 2 * 8 + 8)
            .unwrap_or(&[]);
        rec.iter().fold(0usize, |v, b| (v << 8) | usize::from(*b))
    };
    let data = records + 5 * 8;
    match blob.get_mut(data + offset_of_block_2) {
        Some(b) => *b = 0x7f,
        None => panic!("no block 2"),
    }
    let r = match TableRef::new(&blob, &v6) {
        Ok(r) => r,
        Err(e) => panic!("cheap check should not decode block 2: {e}"),
    };
    assert!(r.verify().is_err());
    // Block 2 holds /24s 128..=191 (10.0.128.0 - 10.0.191.255).
    assert_eq!(r.country(ip("10.0.128.0")), None);
    assert_eq!(r.country(ip("10.0.150.9")), None);
    assert_eq!(r.country(ip("10.0.127.255")), Some("DE"));
    assert_eq!(r.country(ip("10.0.192.0")), Some("US"));
}

/// Addresses worth probing in a possibly corrupt table.
fn probes() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = [
        "0.0.0.0",
        "1.0.0.0",
        "1.0.1.7",
        "1.0.8.3",
        "129.97.208.23",
        "200.0.0.0",
        "255.255.255.255",
        "::",
        "2001:200::1",
        "2001:209::",
        "2001:20a::5",
        "ffff::1",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]
    .iter()
    .map(|s| ip(s))
    .collect();
    v.push(IpAddr::V6(Ipv6Addr::from(u128::MAX / 3)));
    v
}

fn assert_sane(r: &TableRef<'_>) {
    let _ = r.verify();
    for a in probes() {
        if let Some(cc) = r.country(a) {
            assert!(
                cc.len() == 2
                    && cc
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                "{a} -> {cc:?}"
            );
        }
    }
}

#[test]
fn every_single_byte_corruption_is_refused_or_harmless() {
    let bytes = encoded(&fixture());
    for which in 0..2 {
        let blob = if which == 0 { &bytes.0 } else { &bytes.1 };
        for i in 0..blob.len() {
            for mask in [0x01u8, 0x80, 0xff, 0x55] {
                let mut bad = blob.clone();
                if let Some(b) = bad.get_mut(i) {
                    *b ^= mask;
                }
                let r = if which == 0 {
                    TableRef::new(&bad, &bytes.1)
                } else {
                    TableRef::new(&bytes.0, &bad)
                };
                if let Ok(r) = r {
                    assert_sane(&r);
                }
            }
        }
    }
}

fn range_list() -> impl Strategy<Value = Vec<(u8, u8, u32, u32, u8)>> {
    // (gap shift, length shift, gap mantissa, length mantissa, country)
    prop::collection::vec((0u8..128, 0u8..128, 0u32..4, 1u32..1000, 0u8..5), 0..300)
}

/// Builds Tor text for one family from a random range list, stopping before
/// the address space runs out.
fn text_for(list: &[(u8, u8, u32, u32, u8)], v6: bool) -> String {
    let max: u128 = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let bits = if v6 { 128 } else { 32 };
    let mut out = String::new();
    let mut next: u128 = 0;
    for &(gs, ls, g, l, c) in list {
        let shift = |s: u8| u32::from(s) % bits;
        let gap = u128::from(g).checked_shl(shift(gs)).unwrap_or(0);
        let len = u128::from(l).checked_shl(shift(ls)).unwrap_or(1).max(1);
        let Some(start) = next.checked_add(gap).filter(|s| *s <= max) else {
            break;
        };
        let end = start.saturating_add(len - 1).min(max);
        let cc = ["US", "DE", "??", "CN", "A1"]
            .get(usize::from(c))
            .copied()
            .unwrap_or("US");
        if v6 {
            out.push_str(&format!(
                "{},{},{cc}\n",
                Ipv6Addr::from(start),
                Ipv6Addr::from(end)
            ));
        } else {
            out.push_str(&format!("{start},{end},{cc}\n"));
        }
        match end.checked_add(1) {
            Some(n) if n <= max => next = n,
            _ => break,
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn encoded_lookups_match_the_parsed_table(
        l4 in range_list(),
        l6 in range_list(),
        extra in prop::collection::vec(any::<u128>(), 20),
    ) {
        let t = parse_tor_geoip(&text_for(&l4, false), &text_for(&l6, true));
        let t = match t { Ok(t) => t, Err(e) => return Err(TestCaseError::fail(e)) };
        let bytes = t.to_bytes().map_err(TestCaseError::fail)?;
        let r = TableRef::new(&bytes.0, &bytes.1).map_err(TestCaseError::fail)?;
        r.verify().map_err(TestCaseError::fail)?;
        prop_assert_eq!(r.len(), (t.v4.len(), t.v6.len()));
        let mut addrs: Vec<IpAddr> = Vec::new();
        for b in &t.v4 {
            for a in [b.start.wrapping_sub(1), b.start, b.start.wrapping_add(1)] {
                addrs.push(IpAddr::V4(Ipv4Addr::from(a as u32)));
            }
        }
        for b in &t.v6 {
            for a in [b.start.wrapping_sub(1), b.start, b.start.wrapping_add(1)] {
                addrs.push(IpAddr::V6(Ipv6Addr::from(a)));
            }
        }
        for a in extra {
            addrs.push(IpAddr::V6(Ipv6Addr::from(a)));
            addrs.push(IpAddr::V4(Ipv4Addr::from(a as u32)));
        }
        for a in addrs {
            prop_assert_eq!(t.country(a), r.country(a), "{}", a);
        }
    }

    #[test]
    fn random_bytes_never_panic(v4 in prop::collection::vec(any::<u8>(), 0..200),
                                v6 in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(r) = TableRef::new(&v4, &v6) {
            assert_sane(&r);
        }
    }

    #[test]
    fn mutated_tables_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                  six in any::<bool>()) {
        let bytes = encoded(&fixture());
        let mut bad = if six { bytes.1.clone() } else { bytes.0.clone() };
        for (i, v) in edits {
            let n = bad.len();
            if let Some(b) = bad.get_mut(i % n) {
                *b = v;
            }
        }
        let r = if six { TableRef::new(&bytes.0, &bad) } else { TableRef::new(&bad, &bytes.1) };
        if let Ok(r) = r {
            assert_sane(&r);
        }
    }

    #[test]
    fn random_text_never_panics(v4 in "[0-9,A-Z?#\\r\\n .:a-f-]{0,200}",
                                v6 in "[0-9,A-Z?#\\r\\n .:a-f-]{0,200}") {
        if let Ok(t) = parse_tor_geoip(&v4, &v6) {
            let bytes = t.to_bytes().map_err(TestCaseError::fail)?;
            let r = TableRef::new(&bytes.0, &bytes.1).map_err(TestCaseError::fail)?;
            assert_sane(&r);
        }
    }
}

/// Where build.rs read the Tor files from, if they are readable here.
fn source_files() -> Option<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("SNOWFLAKE_GEOIP_DIR") {
        Some(d) if !d.is_empty() => root.join(d),
        _ => root.join("build/geoip/usr/share/tor"),
    };
    let v4 = std::fs::read_to_string(dir.join("geoip")).ok()?;
    let v6 = std::fs::read_to_string(dir.join("geoip6")).ok()?;
    Some((v4, v6))
}

#[test]
fn embedded_table_is_valid() {
    let (v4, v6) = geoip::embedded_bytes();
    let started = Instant::now();
    let checked = TableRef::new(v4, v6);
    let took = started.elapsed();
    let r = match checked {
        Ok(r) => r,
        Err(e) => panic!("build.rs embedded a corrupt table: {e}"),
    };
    let started = Instant::now();
    let verified = r.verify();
    let took_verify = started.elapsed();
    if let Err(e) = verified {
        panic!("build.rs embedded a corrupt table: {e}");
    }
    assert_eq!(r.len(), geoip::embedded().len());
    println!(
        "embedded geoip: IPv4 {} bytes ({} boundaries), IPv6 {} bytes ({} boundaries); \
         TableRef::new took {took:?}, verify {took_verify:?}",
        v4.len(),
        r.len().0,
        v6.len(),
        r.len().1
    );
    if r.is_empty() {
        println!("embedded geoip table is empty (run `make geoip`); skipping data checks");
    }
}

#[test]
fn embedded_table_knows_stable_facts() {
    if geoip::embedded().is_empty() {
        println!("embedded geoip table is empty (run `make geoip`); skipped");
        return;
    }
    // University of Waterloo since the 1980s; Tor's own test data uses it.
    assert_eq!(geoip::country(ip("129.97.208.23")), Some("CA"));
    assert_eq!(geoip::country(ip("::ffff:129.97.208.23")), Some("CA"));
    // Long-allocated public addresses resolve to some code.
    for a in [
        "8.8.8.8",
        "1.1.1.1",
        "9.9.9.9",
        "193.0.0.1",
        "2001:4860:4860::8888",
        "2606:4700:4700::1111",
    ] {
        let cc = geoip::country(ip(a));
        assert!(
            cc.is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())),
            "{a} -> {cc:?}"
        );
    }
    // Special-purpose addresses belong to no country.
    for a in [
        "10.0.0.1",
        "127.0.0.1",
        "192.168.1.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
    ] {
        assert_eq!(geoip::country(ip(a)), None, "{a}");
    }
}

#[test]
fn embedded_table_matches_the_source_files() {
    let r = geoip::embedded();
    if r.is_empty() {
        println!("embedded geoip table is empty (run `make geoip`); skipped");
        return;
    }
    let Some((v4, v6)) = source_files() else {
        println!("geoip source files not readable here; skipped");
        return;
    };
    let t = match parse_tor_geoip(&v4, &v6) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let bytes = encoded(&t);
    let (e4, e6) = geoip::embedded_bytes();
    if bytes.0 != e4 || bytes.1 != e6 {
        println!("geoip source files changed since the build; skipped");
        return;
    }
    // Every 7th boundary, and its neighbours, in both forms.
    for (fam, bounds) in [(4, &t.v4), (6, &t.v6)] {
        for b in bounds.iter().step_by(7) {
            for a in [b.start.wrapping_sub(1), b.start, b.start.wrapping_add(1)] {
                let addr = if fam == 4 {
                    IpAddr::V4(Ipv4Addr::from(a as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                assert_eq!(t.country(addr), r.country(addr), "{addr}");
            }
        }
    }
}
