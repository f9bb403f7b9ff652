//! A bounds-checked reader for TPM's big-endian wire format (and the
//! little-endian TCG event log). Every read of
//! untrusted bytes goes through here: running out is an error, never a panic.

use crate::VerifyError;

#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    fn err(&self, why: String) -> VerifyError {
        VerifyError::Malformed(format!("{}: {why}", self.what))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], VerifyError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err(format!("truncated at byte {} (wanted {n} more)", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, VerifyError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, VerifyError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, VerifyError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, VerifyError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Little-endian reads, for the TCG event log.
    pub fn u16_le(&mut self) -> Result<u16, VerifyError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32_le(&mut self) -> Result<u32, VerifyError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A TPM2B: a u16 size followed by that many bytes.
    pub fn tpm2b(&mut self) -> Result<&'a [u8], VerifyError> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    pub fn finish(&self) -> Result<(), VerifyError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err(format!("{} trailing bytes", self.buf.len() - self.pos)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses_overruns() {
        let mut r = Reader::new(&[0, 2, 0xAA, 0xBB, 1], "x");
        assert_eq!(r.tpm2b().unwrap(), &[0xAA, 0xBB]);
        assert!(r.finish().is_err());
        assert_eq!(r.u8().unwrap(), 1);
        assert!(r.u32().unwrap_err().to_string().contains("truncated"));
        let mut r = Reader::new(&[0xFF, 0xFF], "x");
        assert!(r.tpm2b().is_err());
    }
}
