//! Just enough DER reading to find a certificate's subject common name (no I/O, no allocation
//! beyond the result).

/// One DER tag-length-value: `(tag, contents, rest)`.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..count] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const EXPLICIT_VERSION: u8 = 0xa0;
/// 2.5.4.3 (id-at-commonName).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The subject common name of a DER-encoded X.509 certificate, if it has one in a string type.
pub fn subject_common_name(certificate_der: &[u8]) -> Option<String> {
    let (tag, certificate, _) = read_tlv(certificate_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = read_tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, after) = read_tlv(rest)?;
    if tag == EXPLICIT_VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = read_tlv(rest)?.2;
    }
    let (tag, mut subject, _) = read_tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    while !subject.is_empty() {
        let (tag, mut rdn, next) = read_tlv(subject)?;
        subject = next;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (tag, attribute, next) = read_tlv(rdn)?;
            rdn = next;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = read_tlv(attribute)?;
            if tag == OID && oid == COMMON_NAME {
                let (tag, text, _) = read_tlv(value)?;
                return match tag {
                    // UTF8String, PrintableString, TeletexString (as Latin-1 is close enough), IA5String
                    0x0c | 0x13 | 0x16 => String::from_utf8(text.to_vec()).ok(),
                    0x14 => Some(text.iter().map(|&b| char::from(b)).collect()),
                    _ => None,
                };
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name_of_an_rcgen_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Octo");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tentacle-01 ü");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_common_name(cert.der()).as_deref(),
            Some("tentacle-01 ü")
        );
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(subject_common_name(b""), None);
        assert_eq!(subject_common_name(&[0x30, 0x82, 0xff]), None);
        assert_eq!(subject_common_name(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let _ = subject_common_name(&bytes);
        }
    }
}
