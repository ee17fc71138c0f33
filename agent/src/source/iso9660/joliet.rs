//! Joliet: a supplementary volume descriptor whose hierarchy has UCS-2
//! big-endian names.

/// Whether a supplementary volume descriptor carries one of the three Joliet
/// escape sequences (`%/@`, `%/C`, `%/E`: UCS-2 levels 1 to 3).
pub(super) fn is_joliet(svd: &[u8]) -> bool {
    matches!(svd.get(88..91), Some([0x25, 0x2F, 0x40 | 0x43 | 0x45]))
}

/// Decodes a Joliet file identifier (UTF-16 big-endian; unpaired surrogates
/// and a stray odd byte become U+FFFD) and removes the `;1` version.
pub(super) fn decode_name(ident: &[u8]) -> String {
    let units = ident.chunks(2).map(|c| match *c {
        [hi, lo] => u16::from_be_bytes([hi, lo]),
        _ => 0xFFFD,
    });
    let name: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    super::directory::strip_version(&name).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ucs2(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    #[test]
    fn names() {
        assert_eq!(
            decode_name(&ucs2("Init-Script.With.Long_Name.sh;1")),
            "Init-Script.With.Long_Name.sh"
        );
        assert_eq!(decode_name(&ucs2("subdir")), "subdir");
        assert_eq!(decode_name(&ucs2("été €;1")), "été €");
        assert_eq!(decode_name(&[0xD8, 0x00, 0x00]), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn escape_sequences() {
        let mut svd = vec![0u8; 2048];
        assert!(!is_joliet(&svd));
        svd[88..91].copy_from_slice(b"%/E");
        assert!(is_joliet(&svd));
        svd[90] = b'X';
        assert!(!is_joliet(&svd));
        assert!(!is_joliet(&svd[..89]));
    }
}
