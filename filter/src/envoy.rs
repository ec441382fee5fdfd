//! How Envoy encodes what the filter reads about an answer: the `response.flags` bit set and
//! its short names, integer properties (8 bytes, little-endian), statuses. Its own module so
//! that both the config (which names flags) and the classifier (which tests them) depend on
//! it, and not on each other.

use std::fmt;

/// Envoy's `response.flags` bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseFlags(u64);

/// Envoy's short flag names and bits (`source/common/stream_info/utility.cc`).
const FLAG_NAMES: &[(&str, u64)] = &[
    ("LH", 0x1),
    ("UH", 0x2),
    ("UT", 0x4),
    ("LR", 0x8),
    ("UR", 0x10),
    ("UF", 0x20),
    ("UC", 0x40),
    ("UO", 0x80),
    ("NR", 0x100),
    ("DI", 0x200),
    ("FI", 0x400),
    ("RL", 0x800),
    ("UAEX", 0x1000),
    ("RLSE", 0x2000),
    ("DC", 0x4000),
    ("URX", 0x8000),
    ("SI", 0x10000),
    ("IH", 0x20000),
    ("DPE", 0x40000),
    ("UMSDR", 0x80000),
    ("RFCF", 0x100000),
    ("NFCF", 0x200000),
    ("DT", 0x400000),
    ("UPE", 0x800000),
    ("NC", 0x1000000),
    ("OM", 0x2000000),
];

impl ResponseFlags {
    /// Wraps a raw bit set as read from the `response.flags` property.
    pub fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw bits.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The bit of a short flag name (`"UF"`), if Envoy has it.
    pub fn bit_of(name: &str) -> Option<u64> {
        FLAG_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, b)| *b)
    }

    /// This set plus `bit`.
    pub fn with(self, bit: u64) -> Self {
        Self(self.0 | bit)
    }

    /// The flags in both sets.
    pub fn intersection(self, other: ResponseFlags) -> ResponseFlags {
        Self(self.0 & other.0)
    }

    /// True when no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when any bit of `bits` is in this set.
    pub fn contains_any(self, bits: u64) -> bool {
        self.0 & bits != 0
    }
}

impl fmt::Display for ResponseFlags {
    /// Envoy's access-log style: `UF,URX`, or `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, bit) in FLAG_NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// Reads Envoy's 8-byte little-endian integer property encoding. Anything else is `None`:
/// a host that encodes differently must never crash the filter.
pub fn decode_u64_le(bytes: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

/// Reads a status code sent as text (`:status` header) or as an 8-byte integer property.
pub fn decode_status(bytes: &[u8]) -> Option<u16> {
    if let Some(n) = decode_u64_le(bytes) {
        return u16::try_from(n).ok().filter(|c| (100..=599).contains(c));
    }
    std::str::from_utf8(bytes)
        .ok()?
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
}
