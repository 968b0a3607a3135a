//! A small seeded pseudo-random generator for reproducible mutations.
//!
//! Mutation testing needs the same mutations for the same seed on every
//! machine and every version of every dependency, so that a finding can be
//! replayed from `(seed, index)`; SplitMix64 (Steele, Lea, Flood 2014) is a
//! few lines, has no state beyond one word and is not used for anything that
//! needs unpredictability.

/// SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one mutation: `seed` and `index` are mixed so that
    /// neighbouring indices give unrelated streams.
    pub fn for_mutation(seed: u64, index: u64) -> Self {
        let mut r = Rng(seed ^ 0x5ca1_ab1e_d00d_f00d);
        let a = r.next_u64();
        Rng(a ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        if hi < lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// Pick an index with probability proportional to its weight.
    pub fn weighted(&mut self, weights: &[u64]) -> Option<usize> {
        let total: u64 = weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut x = self.next_u64() % total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return Some(i);
            }
            x -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_index_same_stream() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_mutation(7, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::for_mutation(7, 3).next_u64(), Rng::for_mutation(7, 4).next_u64());
        assert_ne!(Rng::for_mutation(7, 3).next_u64(), Rng::for_mutation(8, 3).next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::for_mutation(1, 1);
        for n in 1..200 {
            assert!(r.below(n) < n);
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.between(5, 4), 5);
        assert_eq!(r.weighted(&[0, 0]), None);
        assert_eq!(r.weighted(&[0, 3]), Some(1));
    }
}
