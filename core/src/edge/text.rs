//! Numbers written into strings on the request path without `core::fmt`: decimals through
//! `itoa`, hex by a table look-up per digit (the `hex` crate's `encode` allocates a string per
//! call, and it has no way to append or to drop leading zeros). Why: in wasm, `format!` reaches `core::fmt`'s generic writer,
//! padding and per-type `Display` code, code an isolate runs from cold caches on every
//! request (a served request evicts them), and each such miss costs more than the
//! arithmetic (bench/README.md, "Where the time goes"). Every function here writes exactly
//! what the `format!` spelling in its doc would.

/// Appends `n` in decimal (`{n}`).
pub fn push_decimal(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `n` in decimal, as a new string (`n.to_string()`).
pub fn decimal(n: impl itoa::Integer) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

/// Appends `bytes` as lower-case hex, two digits each (`hex::encode`).
pub fn push_hex_bytes(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)].into());
        out.push(HEX[usize::from(b & 0xf)].into());
    }
}

/// Appends `n` as 16 lower-case hex digits (`{n:016x}`).
pub fn push_hex16(out: &mut String, n: u64) {
    push_hex_bytes(out, &n.to_be_bytes());
}

/// Appends `n` as lower-case hex without leading zeros (`{n:x}`; `0` for zero).
pub fn push_hex(out: &mut String, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[((n >> (4 * i)) & 0xf) as usize].into());
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    const NUMBERS: [u64; 12] = [
        0,
        1,
        9,
        10,
        15,
        16,
        255,
        256,
        0x6934_1f2a,
        0xdead_beef_0000_0001,
        u64::MAX - 1,
        u64::MAX,
    ];

    #[test]
    fn each_writes_what_format_would() {
        for n in NUMBERS {
            let mut hex = String::new();
            push_hex(&mut hex, n);
            assert_eq!(hex, format!("{n:x}"));
            let mut hex16 = String::from("x");
            push_hex16(&mut hex16, n);
            assert_eq!(hex16, format!("x{n:016x}"));
            let mut bytes = String::new();
            push_hex_bytes(&mut bytes, &n.to_le_bytes()[..3]);
            assert_eq!(bytes, hex::encode(&n.to_le_bytes()[..3]));
            let mut dec = String::from("=");
            push_decimal(&mut dec, n);
            assert_eq!(dec, format!("={n}"));
            assert_eq!(decimal(n as u16), (n as u16).to_string());
            assert_eq!(decimal(n as u8), (n as u8).to_string());
        }
    }
}
