//! Python and NumPy behaviour that the reference scores depend on, reproduced bit for bit.

/// Python's `str.isspace` for one character (Rust's `White_Space` plus the ASCII separators 0x1C-0x1F).
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

/// Python's `str.split()` with no argument.
pub fn py_split(s: &str) -> Vec<&str> {
    s.split(is_py_space).filter(|t| !t.is_empty()).collect()
}

/// Python's `str.strip()` with no argument.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// NumPy's pairwise summation of float64 (`pairwise_sum_DOUBLE`): blocks of 8 accumulators up to 128
/// values, halves beyond that.
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |s, x| s + x);
    }
    if n > 128 {
        let half = n / 2;
        let half = half - half % 8;
        return pairwise_sum(&a[..half]) + pairwise_sum(&a[half..]);
    }
    let mut r = [0.0f64; 8];
    r.copy_from_slice(&a[..8]);
    let full = n - n % 8;
    for block in a[8..full].chunks_exact(8) {
        for (acc, x) in r.iter_mut().zip(block) {
            *acc += x;
        }
    }
    let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for x in &a[full..] {
        res += x;
    }
    res
}

/// `np.mean` of a 1-D float64 array: the reduction starts from the identity 0.0, then divides by n.
pub fn np_mean(values: &[f64]) -> f64 {
    (0.0 + pairwise_sum(values)) / values.len() as f64
}
