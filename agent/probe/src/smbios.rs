//! A minimal SMBIOS table walker: the structure framing and type 17
//! (Memory Device), which is all the inventory needs from the raw table.
//!
//! The table is untrusted input: every offset is bounds-checked and a
//! malformed table yields an error, never a panic.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One installed memory module (SMBIOS type 17 with a non-zero size).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Dimm {
    pub locator: Option<String>,
    pub bank: Option<String>,
    pub size_bytes: u64,
    /// DDR4, DDR5, ... or "Other"/"Unknown".
    pub memory_type: String,
    pub speed_mts: Option<u32>,
    pub configured_speed_mts: Option<u32>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub part_number: Option<String>,
}

/// One SMBIOS structure: its type, formatted area and string set.
#[derive(Debug)]
pub struct Structure<'a> {
    pub kind: u8,
    pub formatted: &'a [u8],
    strings: Vec<&'a [u8]>,
}

impl<'a> Structure<'a> {
    fn byte(&self, off: usize) -> Option<u8> {
        self.formatted.get(off).copied()
    }

    fn word(&self, off: usize) -> Option<u16> {
        let b = self.formatted.get(off..off + 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    fn dword(&self, off: usize) -> Option<u32> {
        let b = self.formatted.get(off..off + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The string a byte at `off` points to (1-based; 0 means none).
    /// Placeholder strings that firmware leaves unfilled come back as `None`.
    fn string(&self, off: usize) -> Option<String> {
        let idx = self.byte(off)? as usize;
        let raw = self.strings.get(idx.checked_sub(1)?)?;
        let s = String::from_utf8_lossy(raw).trim().to_string();
        const PLACEHOLDERS: &[&str] = &[
            "",
            "Not Specified",
            "Unknown",
            "NO DIMM",
            "To Be Filled By O.E.M.",
            "Default string",
        ];
        (!PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(&s))).then_some(s)
    }
}

/// Split a raw table (as in `/sys/firmware/dmi/tables/DMI`) into structures.
pub fn structures(table: &[u8]) -> Result<Vec<Structure<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < table.len() {
        let header = table
            .get(pos..pos + 4)
            .ok_or_else(|| format!("truncated structure header at offset {pos}"))?;
        let (kind, len) = (header[0], header[1] as usize);
        if len < 4 {
            return Err(format!("structure at offset {pos} has length {len} < 4"));
        }
        let formatted = table
            .get(pos..pos + len)
            .ok_or_else(|| format!("structure at offset {pos} runs past the table end"))?;
        // Strings follow the formatted area and end with a double NUL.
        let mut strings = Vec::new();
        let mut cur = pos + len;
        loop {
            let rest = table
                .get(cur..)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| format!("unterminated string set of structure at offset {pos}"))?;
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| format!("unterminated string set of structure at offset {pos}"))?;
            if end == 0 {
                // An empty string set is written as two NULs.
                cur += if strings.is_empty() { 2 } else { 1 };
                break;
            }
            strings.push(&rest[..end]);
            cur += end + 1;
        }
        out.push(Structure {
            kind,
            formatted,
            strings,
        });
        if kind == 127 {
            break;
        }
        pos = cur;
    }
    Ok(out)
}

fn memory_type_name(code: u8) -> String {
    match code {
        0x01 => "Other",
        0x02 => "Unknown",
        0x03 => "DRAM",
        0x07 => "RAM",
        0x0F => "SDRAM",
        0x12 => "DDR",
        0x13 => "DDR2",
        0x18 => "DDR3",
        0x1A => "DDR4",
        0x1B => "LPDDR",
        0x1C => "LPDDR2",
        0x1D => "LPDDR3",
        0x1E => "LPDDR4",
        0x1F => "Logical non-volatile device",
        0x20 => "HBM",
        0x21 => "HBM2",
        0x22 => "DDR5",
        0x23 => "LPDDR5",
        0x24 => "HBM3",
        _ => return format!("type 0x{code:02x}"),
    }
    .to_string()
}

/// Installed memory modules described by the table's type-17 structures.
pub fn dimms(table: &[u8]) -> Result<Vec<Dimm>, String> {
    let mut out = Vec::new();
    for s in structures(table)?.iter().filter(|s| s.kind == 17) {
        let Some(size_bytes) = dimm_size(s) else {
            continue; // empty slot or unknown size
        };
        let speed = |off: usize, ext: usize| match s.word(off) {
            Some(0) | None => None,
            Some(0xFFFF) => s.dword(ext).filter(|v| *v != 0),
            Some(v) => Some(u32::from(v)),
        };
        out.push(Dimm {
            locator: s.string(0x10),
            bank: s.string(0x11),
            size_bytes,
            memory_type: s.byte(0x12).map_or("Unknown".into(), memory_type_name),
            speed_mts: speed(0x15, 0x54),
            configured_speed_mts: speed(0x20, 0x58),
            manufacturer: s.string(0x17),
            serial: s.string(0x18),
            part_number: s.string(0x1A),
        });
    }
    Ok(out)
}

fn dimm_size(s: &Structure<'_>) -> Option<u64> {
    match s.word(0x0C)? {
        0 | 0xFFFF => None,
        // Extended size (in MiB) holds sizes of 32 GiB and more.
        0x7FFF => s
            .dword(0x1C)
            .map(|mb| u64::from(mb & 0x7FFF_FFFF) << 20)
            .filter(|b| *b > 0),
        v if v & 0x8000 != 0 => Some(u64::from(v & 0x7FFF) << 10),
        v => Some(u64::from(v) << 20),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a type-17 structure as QEMU and real firmware lay it out (SMBIOS 3.2).
    pub fn type17(size_word: u16, ext_mb: u32, strings: &[&str]) -> Vec<u8> {
        let mut f = vec![0u8; 0x5C];
        f[0] = 17;
        f[1] = 0x5C;
        f[0x0C..0x0E].copy_from_slice(&size_word.to_le_bytes());
        f[0x10] = 1; // locator
        f[0x11] = 2; // bank
        f[0x12] = 0x1A; // DDR4
        f[0x15..0x17].copy_from_slice(&3200u16.to_le_bytes());
        f[0x17] = 3; // manufacturer
        f[0x18] = 4; // serial
        f[0x1A] = 5; // part number
        f[0x1C..0x20].copy_from_slice(&ext_mb.to_le_bytes());
        f[0x20..0x22].copy_from_slice(&2933u16.to_le_bytes());
        for s in strings {
            f.extend_from_slice(s.as_bytes());
            f.push(0);
        }
        f.push(0);
        if strings.is_empty() {
            f.push(0);
        }
        f
    }

    pub fn end_of_table() -> Vec<u8> {
        vec![127, 4, 0xFF, 0xFF, 0, 0]
    }

    #[test]
    fn parses_dimms_and_skips_empty_slots() {
        let strings = ["DIMM 0", "BANK 0", "Samsung", "S3R1AL", "M393A4K40DB3-CWE"];
        let mut table = type17(16 * 1024, 0, &strings);
        table.extend(type17(0, 0, &[])); // empty slot
        table.extend(type17(0x7FFF, 64 * 1024, &strings)); // 64 GiB, extended size
        table.extend(end_of_table());
        let d = dimms(&table).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].size_bytes, 16 << 30);
        assert_eq!(d[1].size_bytes, 64 << 30);
        assert_eq!(d[0].locator.as_deref(), Some("DIMM 0"));
        assert_eq!(d[0].bank.as_deref(), Some("BANK 0"));
        assert_eq!(d[0].memory_type, "DDR4");
        assert_eq!(d[0].speed_mts, Some(3200));
        assert_eq!(d[0].configured_speed_mts, Some(2933));
        assert_eq!(d[0].manufacturer.as_deref(), Some("Samsung"));
        assert_eq!(d[0].serial.as_deref(), Some("S3R1AL"));
        assert_eq!(d[0].part_number.as_deref(), Some("M393A4K40DB3-CWE"));
    }

    #[test]
    fn placeholders_are_none() {
        let mut table = type17(
            8192,
            0,
            &[
                "DIMM 0",
                "Not Specified",
                "Unknown",
                "Default string",
                "NO DIMM",
            ],
        );
        table.extend(end_of_table());
        let d = dimms(&table).unwrap();
        assert_eq!(d[0].bank, None);
        assert_eq!(d[0].manufacturer, None);
        assert_eq!(d[0].part_number, None);
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        let good = {
            let mut t = type17(1024, 0, &["A", "B", "C", "D", "E"]);
            t.extend(end_of_table());
            t
        };
        // Every truncation either parses what is whole or reports an error.
        for cut in 0..good.len() {
            let _ = dimms(&good[..cut]);
        }
        assert!(dimms(&[17, 2, 0, 0]).unwrap_err().contains("length 2"));
        assert!(dimms(&[17, 0x40, 0, 0])
            .unwrap_err()
            .contains("past the table end"));
        let mut no_strings_end = type17(1024, 0, &["A"]);
        no_strings_end.truncate(no_strings_end.len() - 1);
        assert!(dimms(&no_strings_end).unwrap_err().contains("unterminated"));
        // Short formatted area (old SMBIOS): fields past it are simply absent.
        let mut short = vec![
            17, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x04, 0, 0, 0, 0, 0x18, 0, 0,
        ];
        short.extend([0, 0]);
        let d = dimms(&short).unwrap();
        assert_eq!(d[0].size_bytes, 1 << 30);
        assert_eq!(d[0].memory_type, "DDR3");
        assert_eq!(d[0].speed_mts, None);
    }
}
