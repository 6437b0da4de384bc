//! Lower-case hex, for digests in keys and headers.

/// Lower-case hex. One allocation: this runs twice per password request (token check and the
/// auth cache key), and a `format!` per byte was the largest cost of the nochg path.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.extend(DIGITS.get(usize::from(nibble)).map(|d| char::from(*d)));
        }
    }
    out
}
