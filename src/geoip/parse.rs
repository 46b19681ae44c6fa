//! Tor's geoip text files → [`Table`] → the compact binary form described in
//! the module docs of `geoip` (src/geoip/mod.rs).
//!
//! This file is also compiled into `build.rs` (`#[path = "src/geoip/parse.rs"]`),
//! so it uses `std` only and never names `crate::` items. Nothing here panics:
//! bad input gives `Err` with the file and line number.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

/// The first four bytes of a non-empty encoded family: `SFG` and the format
/// version.
pub const MAGIC: [u8; 4] = *b"SFG\x01";

/// Bytes before the country dictionary: magic (4), address width in bytes
/// (1), entries per block (1), dictionary length (u16 BE), entry count (u32 BE).
pub const HEADER_LEN: usize = 12;

/// Entries per block: one index record per block, then a linear scan of at
/// most this many entries per lookup.
pub const BLOCK: u8 = 64;

/// An address family and its encoding parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Address width in bytes.
    pub const fn width(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// The largest address, as a number.
    pub const fn max(self) -> u128 {
        match self {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        }
    }

    /// Bits of a delta's first byte holding its trailing-zero count (enough
    /// for 0..=31, resp. 0..=127).
    pub const fn tz_bits(self) -> u32 {
        match self {
            Family::V4 => 5,
            Family::V6 => 7,
        }
    }

    /// Name of the Tor file, for messages.
    pub const fn file_name(self) -> &'static str {
        match self {
            Family::V4 => "geoip",
            Family::V6 => "geoip6",
        }
    }
}

/// Where a country's range begins: every address from `start` up to the next
/// boundary's `start` (or the end of the family) is in `country`; `None`
/// means unknown. Addresses below the first boundary are unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boundary {
    pub start: u128,
    /// Two ASCII upper-case letters or digits.
    pub country: Option<[u8; 2]>,
}

/// A parsed geoip table, in canonical form: boundaries strictly increasing,
/// no two neighbours with the same country, no leading unknown boundary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub v4: Vec<Boundary>,
    pub v6: Vec<Boundary>,
}

/// Parses Tor's `geoip` (IPv4: `<int start>,<int end>,<CC>`) and `geoip6`
/// (IPv6: `<addr start>,<addr end>,<CC>`) files. Blank lines and lines whose
/// first non-blank character is `#` are skipped; `\r\n` endings are fine.
/// Ranges may come in any order but must not overlap. The code `??` means
/// unknown, the same as no range; codes are upper-cased.
pub fn parse_tor_geoip(v4_text: &str, v6_text: &str) -> Result<Table, String> {
    Ok(Table {
        v4: parse_family(v4_text, Family::V4)?,
        v6: parse_family(v6_text, Family::V6)?,
    })
}

/// One parsed line: start, end (inclusive), country, line number.
type Range = (u128, u128, Option<[u8; 2]>, usize);

fn parse_family(text: &str, family: Family) -> Result<Vec<Boundary>, String> {
    let mut ranges: Vec<Range> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n.saturating_add(1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |what: String| format!("{} line {line_no}: {what}", family.file_name());
        let range = parse_line(line, family).map_err(err)?;
        ranges.push((range.0, range.1, range.2, line_no));
    }
    ranges.sort_by_key(|r| r.0);
    let mut previous: Option<&Range> = None;
    for r in &ranges {
        if let Some(p) = previous {
            if r.0 <= p.1 {
                return Err(format!(
                    "{} line {}: range overlaps the range on line {}",
                    family.file_name(),
                    r.3.max(p.3),
                    r.3.min(p.3)
                ));
            }
        }
        previous = Some(r);
    }
    Ok(boundaries(&ranges, family))
}

fn parse_line(line: &str, family: Family) -> Result<(u128, u128, Option<[u8; 2]>), String> {
    let mut fields = line.split(',');
    let (Some(start), Some(end), Some(cc), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(format!("expected `start,end,CC`, got {line:?}"));
    };
    let start = parse_addr(start.trim(), family)?;
    let end = parse_addr(end.trim(), family)?;
    if start > end {
        return Err(format!("range start {start} is after its end {end}"));
    }
    let country = parse_country(cc.trim())?;
    Ok((start, end, country))
}

fn parse_addr(field: &str, family: Family) -> Result<u128, String> {
    match family {
        Family::V4 => field
            .parse::<u32>()
            .map(u128::from)
            .map_err(|_| format!("{field:?} is not an IPv4 address as an integer")),
        Family::V6 => field
            .parse::<Ipv6Addr>()
            .map(u128::from)
            .map_err(|_| format!("{field:?} is not an IPv6 address")),
    }
}

fn parse_country(field: &str) -> Result<Option<[u8; 2]>, String> {
    match field.as_bytes() {
        b"??" => Ok(None),
        &[a, b] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
            Ok(Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
        }
        _ => Err(format!("{field:?} is not a two-letter country code")),
    }
}

/// Sorted, non-overlapping ranges → canonical boundaries.
fn boundaries(ranges: &[Range], family: Family) -> Vec<Boundary> {
    fn push(out: &mut Vec<Boundary>, start: u128, country: Option<[u8; 2]>) {
        match out.last() {
            Some(last) if last.country == country => {}
            None if country.is_none() => {}
            _ => out.push(Boundary { start, country }),
        }
    }
    let mut out = Vec::new();
    // The first address after the previous known range, if any.
    let mut next: Option<u128> = None;
    for &(start, end, country, _) in ranges {
        let Some(country) = country else { continue };
        if let Some(gap) = next {
            if gap < start {
                push(&mut out, gap, None);
            }
        }
        push(&mut out, start, Some(country));
        next = end.checked_add(1);
    }
    if let Some(gap) = next {
        if gap <= family.max() {
            push(&mut out, gap, None);
        }
    }
    out
}

impl Table {
    /// The country of `ip` by binary search over the parsed boundaries: the
    /// reference the encoded form is tested against. IPv4-mapped IPv6
    /// addresses are looked up as IPv4, like `geoip::TableRef::country`.
    pub fn country(&self, ip: IpAddr) -> Option<&str> {
        let (bounds, addr) = match ip {
            IpAddr::V4(v4) => (&self.v4, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (&self.v4, u128::from(u32::from(v4))),
                None => (&self.v6, u128::from(v6)),
            },
        };
        let after = bounds.partition_point(|b| b.start <= addr);
        let b = bounds.get(after.checked_sub(1)?)?;
        b.country.as_ref().and_then(|c| std::str::from_utf8(c).ok())
    }

    /// The binary forms of the IPv4 and IPv6 families (an empty family
    /// encodes as zero bytes).
    pub fn to_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        Ok((encode(&self.v4, Family::V4)?, encode(&self.v6, Family::V6)?))
    }
}

/// Encodes one family's boundaries (which must be strictly increasing and
/// within the family; anything else is refused).
pub fn encode(bounds: &[Boundary], family: Family) -> Result<Vec<u8>, String> {
    if bounds.is_empty() {
        return Ok(Vec::new());
    }
    // Dictionary: most frequent codes first, so they get one-byte indexes.
    let mut freq: BTreeMap<[u8; 2], usize> = BTreeMap::new();
    for c in bounds.iter().filter_map(|b| b.country) {
        let n = freq.entry(c).or_default();
        *n = n.saturating_add(1);
    }
    let mut codes: Vec<([u8; 2], usize)> = freq.into_iter().collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let index_of: BTreeMap<[u8; 2], u32> = codes
        .iter()
        .zip(1u32..)
        .map(|((c, _), i)| (*c, i))
        .collect();
    let ncodes = u16::try_from(codes.len()).map_err(|_| "too many country codes".to_string())?;
    let count = u32::try_from(bounds.len()).map_err(|_| "too many ranges".to_string())?;

    let width = usize::from(family.width());
    let mut index = Vec::new();
    let mut data = Vec::new();
    let mut previous: Option<u128> = None;
    for (i, b) in bounds.iter().enumerate() {
        if b.start > family.max() {
            return Err(format!("address {} out of range", b.start));
        }
        let cc = match b.country {
            None => 0,
            Some(c) => index_of.get(&c).copied().unwrap_or(0),
        };
        if i % usize::from(BLOCK) == 0 {
            if previous.is_some_and(|p| p >= b.start) {
                return Err("boundaries not strictly increasing".to_string());
            }
            let offset = u32::try_from(data.len()).map_err(|_| "table too large".to_string())?;
            let start = b.start.to_be_bytes();
            index.extend(start.iter().skip(16usize.saturating_sub(width)));
            index.extend_from_slice(&offset.to_be_bytes());
        } else {
            let delta = previous
                .and_then(|p| b.start.checked_sub(p))
                .filter(|d| *d > 0)
                .ok_or_else(|| "boundaries not strictly increasing".to_string())?;
            put_delta(&mut data, delta, family.tz_bits());
        }
        put_varint(&mut data, u128::from(cc));
        previous = Some(b.start);
    }

    let mut out = Vec::with_capacity(
        HEADER_LEN
            .saturating_add(codes.len().saturating_mul(2))
            .saturating_add(index.len())
            .saturating_add(data.len()),
    );
    out.extend_from_slice(&MAGIC);
    out.push(family.width());
    out.push(BLOCK);
    out.extend_from_slice(&ncodes.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for (c, _) in &codes {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&index);
    out.extend_from_slice(&data);
    Ok(out)
}

/// LEB128: seven bits per byte, least significant first, high bit set on all
/// bytes but the last.
pub fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// A delta `d > 0` written as `d = (2·h + 1) << t`: the first byte holds `t`
/// in its low `tz_bits` bits and the low bits of `h` above them, then `h`'s
/// remaining bits follow as LEB128 (so a power of two, `h = 0`, takes one
/// byte, and IPv4 deltas such as 256, 768 or 1792 too).
pub fn put_delta(out: &mut Vec<u8>, d: u128, tz_bits: u32) {
    let t = d.trailing_zeros().min(127);
    let h = d.checked_shr(t).unwrap_or(0) >> 1;
    let first_bits = 7u32.saturating_sub(tz_bits);
    let low = h & ((1u128 << first_bits) - 1);
    let rest = h.checked_shr(first_bits).unwrap_or(0);
    let first = (t as u8) | ((low as u8) << tz_bits);
    if rest == 0 {
        out.push(first);
    } else {
        out.push(first | 0x80);
        put_varint(out, rest);
    }
}
