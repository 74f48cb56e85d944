//! Log lines of random words, the same on every run: a seeded xorshift64, so benches and
//! tests need no RNG crate.

/// `n` lines of `words` random lowercase words of six letters each, from xorshift64
/// seeded with `seed` (not 0). Random words share nothing, so to a template miner each
/// line is a template of its own: its worst case.
///
/// ```
/// let lines = selfheal_testsupport::random_word_lines(2, 6, 7);
/// assert_eq!(lines, selfheal_testsupport::random_word_lines(2, 6, 7));
/// assert_eq!(lines[0].split(' ').count(), 6);
/// assert_ne!(lines[0], lines[1]);
/// ```
pub fn random_word_lines(n: usize, words: usize, mut seed: u64) -> Vec<String> {
    assert_ne!(seed, 0, "xorshift64 stays at 0 from a zero seed");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..n)
        .map(|_| {
            (0..words)
                .map(|_| {
                    let r = next();
                    (0..6)
                        .map(|i| char::from(b'a' + ((r >> (i * 5)) % 26) as u8))
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
