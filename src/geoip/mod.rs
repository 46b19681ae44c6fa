//! IP address → country, from Tor's geoip tables embedded at build time
//! (docs/design.md §2.4, docs/protocol.md §5.2). Pure: no I/O, no network.
//!
//! Clients reach the broker through a fronting CDN or the AMP cache, so
//! `request.cf.country` is the CDN's country. Their address comes from the
//! forwarding headers or the offer's candidates (`client_ip`), and
//! this module turns it into a country, as the Go broker does with Tor's
//! `geoip`/`geoip6` files (Debian package `tor-geoipdb`, converted from the
//! IPFire Location database).
//!
//! # API
//!
//! * [`country`]`(ip) -> Option<&'static str>`: two ASCII upper-case letters
//!   (or digits), as in the Tor files (so also `EU`, `AP`, `ZZ`, … where the
//!   data has them); `None` when the table has no entry, the entry is `??`, or
//!   the table is empty or corrupt. Feed it to `metrics::Country::new`, which
//!   turns `None` into `??`.
//! * IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up in the IPv4
//!   table, as Go's `net.IP.To4` makes the Go broker do; every other IPv6
//!   address (including the deprecated IPv4-compatible `::a.b.c.d`, 6to4 and
//!   Teredo) in the IPv6 table.
//! * [`embedded`] is the table built into this binary, validated once per
//!   process; [`TableRef::new`] reads any encoded table (zero-copy);
//!   [`parse_tor_geoip`] reads Tor's text format into a [`Table`], whose
//!   [`Table::to_bytes`] encodes it (build.rs uses the same code).
//!
//! # The embedded table
//!
//! `build.rs` reads `geoip` and `geoip6` from `$SNOWFLAKE_GEOIP_DIR` (default
//! `build/geoip/usr/share/tor` under the crate root, filled by `make geoip`).
//! If they are missing or do not parse, it embeds empty tables and prints one
//! `cargo:warning`: every country is then `None` (`??`). While they are
//! missing cargo reruns the build script on every build (it watches paths that
//! do not exist), so the data shows up as soon as it is fetched.
//!
//! # Binary format (per family, version 1)
//!
//! The table is a list of *boundaries* `(start, country)`: each covers the
//! addresses from its start to the next boundary's start − 1 (the last one to
//! the family's largest address); addresses below the first boundary are
//! unknown. Gaps in the Tor files become boundaries with country 0
//! (unknown), and neighbouring ranges with the same country are merged, so
//! only starts are stored. An empty family is zero bytes. Otherwise, all
//! integers big-endian:
//!
//! | bytes | content |
//! |---|---|
//! | 4 | magic `SFG\x01` |
//! | 1 | address width W: 4 (IPv4) or 16 (IPv6) |
//! | 1 | B, boundaries per block (64) |
//! | 2 | C, number of country codes |
//! | 4 | N, number of boundaries |
//! | 2·C | the codes, two ASCII bytes each; country index k ≥ 1 is the k-th (most frequent first), 0 is unknown |
//! | (W+4)·⌈N/B⌉ | block index: each block's first start (W bytes) and the offset of its first entry in the data (u32) |
//! | rest | data: per boundary, the delta from the previous start (omitted for a block's first boundary, whose start is in the index), then the country index as LEB128 |
//!
//! A delta `d > 0` is written as `d = (2h + 1) << t`: the first byte holds `t`
//! in its low T bits (T = 5 for IPv4, 7 for IPv6) and the low 7 − T bits of
//! `h` above them, the high bit says more bytes follow, and they carry the
//! rest of `h` as LEB128. So the common power-of-two deltas take one byte.
//!
//! A lookup binary-searches the block index, then decodes at most B entries
//! of one block. [`TableRef::new`] checks, in time proportional to the
//! number of blocks (well under a millisecond for the full table), the
//! magic, widths, lengths, codes, and that the index's starts and offsets
//! strictly increase inside their bounds, and decodes the last block to the
//! end of the data (so any truncation is caught). Decoding a block is
//! checked too: reads stay inside the block, starts increase, stay in the
//! family and below the next block's start, country indexes are in the
//! dictionary; a malformed block answers `None`. So a corrupt table gives
//! unknown (or, if it still looks well-formed, some valid code), never a
//! panic. [`TableRef::verify`] decodes every block (about 6 ms natively for
//! the full table, too much to spend in a Worker request; the tests run it).
//!
//! Sizes with tor-geoipdb 0.4.9.11 (IPFire data, 385,602 IPv4 and 276,626
//! IPv6 lines, 9.5 MB and 16 MB of text): IPv4 389,992 boundaries in 856,825
//! bytes, IPv6 300,224 boundaries in 809,601 bytes; 1.67 MB together, about
//! 0.8 MB of it after gzip (Workers' size limit counts the gzip size).

mod parse;

use std::net::IpAddr;
use std::sync::OnceLock;

pub use parse::{parse_tor_geoip, Boundary, Table};
use parse::{Family, HEADER_LEN, MAGIC};

static EMBEDDED_V4: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/geoip4.bin"));
static EMBEDDED_V6: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/geoip6.bin"));

/// The country of `ip` in the embedded table; see the module docs.
pub fn country(ip: IpAddr) -> Option<&'static str> {
    embedded().country(ip)
}

/// The table built into this binary, checked by [`TableRef::new`] on first
/// use; a family that fails the check is replaced by an empty one.
pub fn embedded() -> TableRef<'static> {
    static TABLE: OnceLock<TableRef<'static>> = OnceLock::new();
    *TABLE.get_or_init(|| TableRef {
        v4: FamilyRef::new(EMBEDDED_V4, Family::V4).unwrap_or(FamilyRef::EMPTY_V4),
        v6: FamilyRef::new(EMBEDDED_V6, Family::V6).unwrap_or(FamilyRef::EMPTY_V6),
    })
}

/// The raw embedded IPv4 and IPv6 tables, as build.rs wrote them.
pub fn embedded_bytes() -> (&'static [u8], &'static [u8]) {
    (EMBEDDED_V4, EMBEDDED_V6)
}

/// A validated, zero-copy view of an encoded table (both families).
#[derive(Clone, Copy, Debug)]
pub struct TableRef<'a> {
    v4: FamilyRef<'a>,
    v6: FamilyRef<'a>,
}

impl<'a> TableRef<'a> {
    /// Checks both encoded families (see the module docs); `Err` says what is
    /// wrong. Zero bytes is a valid empty family.
    pub fn new(v4: &'a [u8], v6: &'a [u8]) -> Result<TableRef<'a>, String> {
        Ok(TableRef {
            v4: FamilyRef::new(v4, Family::V4).map_err(|e| format!("IPv4 table: {e}"))?,
            v6: FamilyRef::new(v6, Family::V6).map_err(|e| format!("IPv6 table: {e}"))?,
        })
    }

    /// Decodes every entry of both families and checks it: what
    /// [`TableRef::new`] leaves to lookups, which then answer `None` for a
    /// malformed block. The tests run it on the embedded table.
    pub fn verify(&self) -> Result<(), String> {
        self.v4.verify().map_err(|e| format!("IPv4 table: {e}"))?;
        self.v6.verify().map_err(|e| format!("IPv6 table: {e}"))
    }

    /// A table that knows no address.
    pub const fn empty() -> TableRef<'static> {
        TableRef {
            v4: FamilyRef::EMPTY_V4,
            v6: FamilyRef::EMPTY_V6,
        }
    }

    /// The country of `ip`; see the module docs.
    pub fn country(&self, ip: IpAddr) -> Option<&'a str> {
        match ip {
            IpAddr::V4(v4) => self.v4.country(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.v4.country(u128::from(u32::from(v4))),
                None => self.v6.country(u128::from(v6)),
            },
        }
    }

    /// Number of boundaries in the IPv4 and IPv6 families.
    pub fn len(&self) -> (usize, usize) {
        (self.v4.count, self.v6.count)
    }

    /// True when both families are empty (no geoip data was built in).
    pub fn is_empty(&self) -> bool {
        self.v4.count == 0 && self.v6.count == 0
    }
}

/// One validated family.
#[derive(Clone, Copy, Debug)]
struct FamilyRef<'a> {
    family: Family,
    block: usize,
    count: usize,
    blocks: usize,
    codes: &'a [u8],
    index: &'a [u8],
    data: &'a [u8],
}

impl<'a> FamilyRef<'a> {
    const EMPTY_V4: FamilyRef<'static> = FamilyRef::empty(Family::V4);
    const EMPTY_V6: FamilyRef<'static> = FamilyRef::empty(Family::V6);

    const fn empty(family: Family) -> FamilyRef<'static> {
        FamilyRef {
            family,
            block: 1,
            count: 0,
            blocks: 0,
            codes: &[],
            index: &[],
            data: &[],
        }
    }

    fn new(bytes: &'a [u8], family: Family) -> Result<FamilyRef<'a>, String> {
        if bytes.is_empty() {
            return Ok(FamilyRef::empty(family));
        }
        let (header, rest) = bytes
            .split_at_checked(HEADER_LEN)
            .ok_or("shorter than its header")?;
        let mut h = Cursor::new(header);
        if h.take(4) != Some(&MAGIC[..]) {
            return Err("bad magic or version".into());
        }
        if h.byte() != Some(family.width()) {
            return Err("wrong address width".into());
        }
        let block = usize::from(h.byte().unwrap_or(0));
        if block == 0 {
            return Err("zero block size".into());
        }
        let ncodes = h.be(2).map(|n| n as usize).ok_or("short header")?;
        let count = h.be(4).map(|n| n as usize).ok_or("short header")?;
        let blocks = count.div_ceil(block);
        let stride = usize::from(family.width()).saturating_add(4);
        let codes_len = ncodes.checked_mul(2).ok_or("too many codes")?;
        let (codes, rest) = rest
            .split_at_checked(codes_len)
            .ok_or("truncated in the country codes")?;
        let index_len = blocks.checked_mul(stride).ok_or("too many blocks")?;
        let (index, data) = rest
            .split_at_checked(index_len)
            .ok_or("truncated in the block index")?;
        if codes
            .iter()
            .any(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
        {
            return Err("a country code is not two upper-case ASCII letters".into());
        }
        let table = FamilyRef {
            family,
            block,
            count,
            blocks,
            codes,
            index,
            data,
        };
        table.check_index()?;
        if blocks == 0 && !data.is_empty() {
            return Err("data without entries".into());
        }
        // The last block must end exactly at the end of the data.
        if blocks > 0 {
            table
                .walk(blocks - 1, |_, _| true)
                .ok_or("the last block is malformed or truncated")?;
        }
        Ok(table)
    }

    /// The block index: starts strictly increase and stay in the family,
    /// offsets strictly increase from 0 and stay inside the data.
    fn check_index(&self) -> Result<(), String> {
        let mut previous: Option<(u128, usize)> = None;
        for b in 0..self.blocks {
            let (start, offset) = self.block_at(b).ok_or("truncated block index")?;
            let ordered = match previous {
                None => offset == 0,
                Some((s, o)) => s < start && o < offset,
            };
            if !ordered || start > self.family.max() || offset >= self.data.len() {
                return Err(format!("block index entry {b} is out of order"));
            }
            previous = Some((start, offset));
        }
        Ok(())
    }

    /// Decodes every block (what [`TableRef::verify`] does).
    fn verify(&self) -> Result<(), String> {
        for b in 0..self.blocks {
            self.walk(b, |_, _| true)
                .ok_or_else(|| format!("block {b} is malformed"))?;
        }
        Ok(())
    }

    /// Decodes block `b`, calling `visit(start, country index)` for each
    /// entry until it returns false. `None` if the block is malformed: a
    /// read past the block's bytes, a start that overflows the family or
    /// reaches the next block's start, a country index not in the
    /// dictionary, or (when walked to the end) bytes left over.
    fn walk(&self, b: usize, mut visit: impl FnMut(u128, u128) -> bool) -> Option<()> {
        let (mut start, offset) = self.block_at(b)?;
        let next = b.checked_add(1)?;
        let (limit, end) = if next < self.blocks {
            let (s, o) = self.block_at(next)?;
            (s, o)
        } else {
            (self.family.max(), self.data.len())
        };
        let mut cur = Cursor::at(self.data.get(..end)?, offset);
        let ncodes = self.codes.len() / 2;
        for k in 0..self.entries_in(b) {
            if k > 0 {
                start = start.checked_add(cur.delta(self.family.tz_bits())?)?;
                let beyond = if next < self.blocks {
                    start >= limit
                } else {
                    start > limit
                };
                if beyond {
                    return None;
                }
            }
            let cc = cur.varint()?;
            if cc > ncodes as u128 {
                return None;
            }
            if !visit(start, cc) {
                return Some(());
            }
        }
        (cur.pos == end).then_some(())
    }

    /// Number of entries in block `b`.
    fn entries_in(&self, b: usize) -> usize {
        let before = b.saturating_mul(self.block);
        self.count.saturating_sub(before).min(self.block)
    }

    /// Block `b`'s first start and data offset.
    fn block_at(&self, b: usize) -> Option<(u128, usize)> {
        let width = usize::from(self.family.width());
        let stride = width.checked_add(4)?;
        let from = b.checked_mul(stride)?;
        let mut c = Cursor::at(self.index, from);
        let start = c.be(width)?;
        let offset = usize::try_from(c.be(4)?).ok()?;
        Some((start, offset))
    }

    fn country(&self, addr: u128) -> Option<&'a str> {
        // The last block whose first start is <= addr.
        let (mut lo, mut hi) = (0usize, self.blocks);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.block_at(mid)?.0 <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut cc = 0;
        self.walk(lo.checked_sub(1)?, |start, c| {
            if start > addr {
                return false;
            }
            cc = c;
            true
        })?;
        self.code(cc)
    }

    /// The code for country index `cc` (0: unknown).
    fn code(&self, cc: u128) -> Option<&'a str> {
        let i = usize::try_from(cc).ok()?.checked_sub(1)?;
        let from = i.checked_mul(2)?;
        let bytes = self.codes.get(from..from.checked_add(2)?)?;
        std::str::from_utf8(bytes).ok()
    }
}

/// A bounds-checked reader.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor::at(bytes, 0)
    }

    fn at(bytes: &'a [u8], pos: usize) -> Cursor<'a> {
        Cursor { bytes, pos }
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos = self.pos.checked_add(1)?;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// A big-endian unsigned integer of `n <= 16` bytes.
    fn be(&mut self, n: usize) -> Option<u128> {
        if n > 16 {
            return None;
        }
        let s = self.take(n)?;
        Some(s.iter().fold(0u128, |v, b| (v << 8) | u128::from(*b)))
    }

    /// LEB128, at most 128 bits.
    fn varint(&mut self) -> Option<u128> {
        self.varint_from(0, 0)
    }

    /// Continues a LEB128 number whose low `shift` bits are `v`.
    fn varint_from(&mut self, mut v: u128, mut shift: u32) -> Option<u128> {
        loop {
            let b = self.byte()?;
            let bits = u128::from(b & 0x7f);
            let part = bits.checked_shl(shift).unwrap_or(0);
            if part.checked_shr(shift).unwrap_or(0) != bits {
                return None; // more than 128 bits
            }
            v |= part;
            if b & 0x80 == 0 {
                return Some(v);
            }
            shift = shift.checked_add(7)?;
        }
    }

    /// A delta as written by `parse::put_delta`.
    fn delta(&mut self, tz_bits: u32) -> Option<u128> {
        let first = self.byte()?;
        let t = u32::from(first) & ((1u32 << tz_bits) - 1);
        let first_bits = 7u32.checked_sub(tz_bits)?;
        let low = u128::from(first & 0x7f) >> tz_bits;
        let h = if first & 0x80 == 0 {
            low
        } else {
            self.varint_from(low, first_bits)?
        };
        let m = h.checked_mul(2)?.checked_add(1)?;
        if m.leading_zeros() < t {
            return None;
        }
        m.checked_shl(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_round_trip() {
        for tz_bits in [5u32, 7] {
            let max_t = if tz_bits == 5 { 31 } else { 127 };
            let limit = if tz_bits == 5 {
                u128::from(u32::MAX)
            } else {
                u128::MAX
            };
            let mut samples = vec![1u128, 2, 3, 255, 256, 768, 1792, 65535, limit];
            for t in 0..=max_t {
                samples.push(1u128 << t);
                samples.push(limit >> (127 - t).min(127));
                samples.push((limit >> 1) | 1);
            }
            for d in samples.into_iter().filter(|d| *d > 0 && *d <= limit) {
                let mut out = Vec::new();
                parse::put_delta(&mut out, d, tz_bits);
                let mut c = Cursor::new(&out);
                assert_eq!(c.delta(tz_bits), Some(d), "d={d} tz_bits={tz_bits}");
                assert_eq!(c.pos, out.len());
                if d.is_power_of_two() {
                    assert_eq!(out.len(), 1, "power of two {d}");
                }
            }
        }
    }

    #[test]
    fn varint_refuses_more_than_128_bits() {
        let mut c = Cursor::new(&[0xff; 20]);
        assert_eq!(c.varint(), None);
        let mut out = Vec::new();
        parse::put_varint(&mut out, u128::MAX);
        assert_eq!(Cursor::new(&out).varint(), Some(u128::MAX));
    }
}
