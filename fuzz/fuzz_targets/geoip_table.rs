//! The geoip table reader: `geoip::TableRef::new` on arbitrary bytes, then
//! `country` (and `verify`) on addresses taken from the input and at the
//! family edges. The first byte picks a mode:
//!
//! * even: the rest is raw bytes, split into the IPv4 and IPv6 tables by a
//!   two-byte length;
//! * odd: the rest is Tor's text format (IPv4 and IPv6 files split at the
//!   first NUL). `parse_tor_geoip` → `Table::to_bytes` must give tables that
//!   `TableRef::new` and `verify` accept and that answer like
//!   `Table::country`; then one byte of the encoding is changed (position and
//!   value from the input) and the corrupt table must still not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowflake_broker::geoip::{parse_tor_geoip, TableRef};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses to look up: edges of both families, and addresses read from
/// the input bytes (which hold the tables' own starts).
fn addresses(data: &[u8]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![
        Ipv4Addr::UNSPECIFIED.into(),
        Ipv4Addr::BROADCAST.into(),
        Ipv6Addr::UNSPECIFIED.into(),
        Ipv6Addr::from(u128::MAX).into(),
        Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped().into(),
    ];
    for w in data.windows(4).step_by(3).take(48) {
        let v = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        out.push(Ipv4Addr::from(v).into());
        out.push(Ipv4Addr::from(v.wrapping_sub(1)).into());
    }
    for w in data.windows(16).step_by(7).take(24) {
        let mut a = [0u8; 16];
        a.copy_from_slice(w);
        let v = u128::from_be_bytes(a);
        out.push(Ipv6Addr::from(v).into());
        out.push(Ipv6Addr::from(v.wrapping_sub(1)).into());
    }
    out
}

fn probe(v4: &[u8], v6: &[u8], addrs: &[IpAddr]) {
    if let Ok(table) = TableRef::new(v4, v6) {
        for ip in addrs {
            if let Some(cc) = table.country(*ip) {
                assert!(
                    cc.len() == 2
                        && cc
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                    "bad code {cc:?}"
                );
            }
        }
        let _ = table.verify();
        let _ = (table.len(), table.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let addrs = addresses(rest);
    if mode % 2 == 0 {
        let Some((len, tables)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let at = usize::from(u16::from_be_bytes(*len)).min(tables.len());
        let (v4, v6) = tables.split_at(at);
        probe(v4, v6, &addrs);
        return;
    }

    let text = String::from_utf8_lossy(rest);
    let (v4_text, v6_text) = text.split_once('\0').unwrap_or((&text, ""));
    let Ok(parsed) = parse_tor_geoip(v4_text, v6_text) else {
        return;
    };
    let Ok((v4, v6)) = parsed.to_bytes() else {
        return;
    };
    let table = TableRef::new(&v4, &v6)
        .unwrap_or_else(|e| panic!("TableRef::new refuses what Table::to_bytes wrote: {e}"));
    table
        .verify()
        .unwrap_or_else(|e| panic!("verify refuses what Table::to_bytes wrote: {e}"));
    assert_eq!(table.len(), (parsed.v4.len(), parsed.v6.len()));
    // Lookups at every boundary, just below it, and at the input's addresses.
    let mut lookups = addrs.clone();
    for b in parsed.v4.iter().take(200) {
        let start = u32::try_from(b.start).unwrap_or(u32::MAX);
        lookups.push(Ipv4Addr::from(start).into());
        lookups.push(Ipv4Addr::from(start.wrapping_sub(1)).into());
    }
    for b in parsed.v6.iter().take(200) {
        lookups.push(Ipv6Addr::from(b.start).into());
        lookups.push(Ipv6Addr::from(b.start.wrapping_sub(1)).into());
    }
    for ip in &lookups {
        assert_eq!(table.country(*ip), parsed.country(*ip), "lookup of {ip}");
    }

    // Corrupt one byte of one family and probe again.
    let n = rest.len();
    let pos = rest.get(n.wrapping_sub(2)).map_or(0, |b| usize::from(*b));
    let val = rest.last().copied().unwrap_or(0xff);
    let (mut v4, mut v6) = (v4, v6);
    let target = if mode & 2 == 0 { &mut v4 } else { &mut v6 };
    if !target.is_empty() {
        let i = pos.wrapping_mul(97) % target.len();
        target[i] ^= val | 1;
    } else {
        target.push(val);
    }
    probe(&v4, &v6, &lookups);
});
