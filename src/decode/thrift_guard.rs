//! A walk over Thrift compact-protocol bytes (Parquet's footer and page headers) that allocates
//! nothing, checking every declared length against the bytes that can follow.
//!
//! The thrift code the parquet crate uses sizes its buffers from declared lengths before reading
//! them (`Vec::with_capacity(list size)`, `vec![0; binary length]`): a 5 KB file declaring a
//! list of two billion schema elements makes it allocate hundreds of gigabytes and abort the
//! process (found by `make fuzz`). Every list element takes at least one byte and every binary
//! its length in bytes, so a declared size larger than what is left of the footer (or of the
//! column chunk, for a page header) can only be a lie; such bytes are refused before the crate
//! reads them.
//!
//! Known gap: the walk follows the types the bytes declare, while the generated code reads a
//! known field id as the type Parquet's schema gives it. A footer whose declared types disagree
//! with the schema can hide a list size from this walk (found by the fuzzer); a walk that knows
//! the footer schema would close it.

use std::io::Read;

/// Why the bytes were refused.
pub(crate) type Refusal = String;

/// Deepest nesting accepted (Parquet's own structures nest a handful of levels).
const MAX_DEPTH: u32 = 64;

struct Walker<'a> {
    input: &'a mut dyn Read,
    /// Bytes that may still follow.
    left: u64,
}

/// Walks one struct at the start of `input`, of which at most `available` bytes exist.
pub(crate) fn check_struct(input: &mut dyn Read, available: u64) -> Result<(), Refusal> {
    let mut w = Walker {
        input,
        left: available,
    };
    w.structure(0)
}

impl Walker<'_> {
    fn byte(&mut self) -> Result<u8, Refusal> {
        if self.left == 0 {
            return Err("it ends in the middle of a structure".into());
        }
        let mut b = [0u8; 1];
        self.input
            .read_exact(&mut b)
            .map_err(|e| format!("it cannot be read: {e}"))?;
        self.left -= 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, Refusal> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number is longer than ten bytes".into())
    }

    /// Skips `n` declared bytes, refusing more than can follow.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), Refusal> {
        if n > self.left {
            return Err(format!(
                "{what} declares {n} bytes where only {} can follow",
                self.left
            ));
        }
        let mut buf = [0u8; 4096];
        let mut rest = n;
        while rest > 0 {
            let take = rest.min(buf.len() as u64) as usize;
            self.input
                .read_exact(&mut buf[..take])
                .map_err(|e| format!("it cannot be read: {e}"))?;
            rest -= take as u64;
        }
        self.left -= n;
        Ok(())
    }

    fn structure(&mut self, depth: u32) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err("structures nest too deep".into());
        }
        loop {
            let header = self.byte()?;
            let ty = header & 0x0f;
            if ty == 0 {
                return Ok(()); // stop
            }
            if header >> 4 == 0 {
                // A long-form field id follows (zigzag i16).
                self.varint()?;
            }
            self.value(ty, depth)?;
        }
    }

    fn value(&mut self, ty: u8, depth: u32) -> Result<(), Refusal> {
        match ty {
            // booleans carry their value in the type
            1 | 2 => Ok(()),
            3 => self.byte().map(drop),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8, "a double"),
            8 => {
                let n = self.varint()?;
                self.skip(n, "a string")
            }
            9 | 10 => {
                let header = self.byte()?;
                let size = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                // Every element takes at least one byte (booleans in lists do too).
                if size > self.left {
                    return Err(format!(
                        "a list declares {size} elements where only {} bytes can follow",
                        self.left
                    ));
                }
                let element = header & 0x0f;
                for _ in 0..size {
                    self.element(element, depth)?;
                }
                Ok(())
            }
            11 => {
                let size = self.varint()?;
                if size == 0 {
                    return Ok(());
                }
                if size > self.left {
                    return Err(format!(
                        "a map declares {size} entries where only {} bytes can follow",
                        self.left
                    ));
                }
                let types = self.byte()?;
                for _ in 0..size {
                    self.element(types >> 4, depth)?;
                    self.element(types & 0x0f, depth)?;
                }
                Ok(())
            }
            12 => self.structure(depth + 1),
            other => Err(format!("unknown field type {other}")),
        }
    }

    /// An element of a list, set or map: booleans take a byte there.
    fn element(&mut self, ty: u8, depth: u32) -> Result<(), Refusal> {
        match ty {
            1 | 2 => self.byte().map(drop),
            other => self.value(other, depth + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honest_structures_pass_and_lying_lengths_are_refused() {
        // {1: i32 5, 2: list<i32> [1, 2], 3: binary "ab", 4: struct {1: bool true}} stop
        let ok = [
            0x15, 0x0a, // field 1, i32, zigzag 5
            0x19, 0x25, 0x02, 0x04, // field 2, list of 2 i32
            0x18, 0x02, b'a', b'b', // field 3, binary len 2
            0x1c, 0x11, 0x00, // field 4, struct {field 1 bool true}
            0x00,
        ];
        assert!(check_struct(&mut &ok[..], ok.len() as u64).is_ok());
        // A list of 2^31 elements in a 10-byte input.
        let lie = [0x19, 0xf5, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        let e = check_struct(&mut &lie[..], lie.len() as u64).unwrap_err();
        assert!(e.contains("declares 2147483648 elements"), "{e}");
        // A 4 GB string.
        let lie = [0x18, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(check_struct(&mut &lie[..], lie.len() as u64).is_err());
        // Truncated.
        assert!(check_struct(&mut &ok[..5], 5).is_err());
    }
}
