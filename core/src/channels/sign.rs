//! HMAC-SHA256 signing and constant-time checks, shared by webhooks, Slack and e-mail links.

use hmac::{Hmac, KeyInit, Mac};
use sha2_11::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `parts` (concatenated) under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `mac` is the HMAC-SHA256 of `parts` under `key`, compared in constant time.
pub fn verify_hmac_sha256(key: &[u8], parts: &[&[u8]], mac: &[u8]) -> bool {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_hmac_sha256(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &mac
        ));
        assert!(!verify_hmac_sha256(
            b"Jeff",
            &[b"what do ya want for nothing?"],
            &mac
        ));
        assert!(!verify_hmac_sha256(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &mac[..31]
        ));
    }
}
