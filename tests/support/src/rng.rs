//! A tiny seeded pseudo-random generator (xorshift64*) for incompressible fixture data.
//!
//! Not for cryptography: it only has to be fast (about 1 GB/s) and make bytes that zlib cannot
//! shrink, so a "large blob" really is large on the wire.

/// Seeded xorshift64* generator; the same seed always gives the same bytes.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        // splitmix64 step, so that small or zero seeds still give a good non-zero state
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
        }
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.fill(&mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::XorShift64;

    #[test]
    fn same_seed_same_bytes_and_odd_lengths() {
        assert_eq!(XorShift64::new(7).bytes(13), XorShift64::new(7).bytes(13));
        assert_ne!(XorShift64::new(7).bytes(16), XorShift64::new(8).bytes(16));
        assert_ne!(XorShift64::new(0).next_u64(), 0);
    }
}
